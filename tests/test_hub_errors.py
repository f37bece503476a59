"""Name checks (before a name becomes a path) and the wording of the errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icl_probe.hub.errors import (
    CheckpointSourceError,
    InvalidNameError,
    closest_names,
    gated_repo,
    revision_not_found,
    safe_join,
    validate_repo_file,
    validate_repo_id,
    validate_revision,
)
from icl_probe.hub.suites import pythia_revisions


@pytest.mark.parametrize("ok", ["EleutherAI/pythia-160m", "allenai/OLMo-2-0425-1B", "mini/pythia-s", "a/b",
                                "EleutherAI/pythia-1.4b-deduped"])
def test_valid_repo_ids(ok):
    assert validate_repo_id(ok) == ok


@pytest.mark.parametrize("bad", ["pythia", "../x", "a/..", "a/../b", "/etc/passwd", "a/b/c", "a//b", "a--b/c",
                                 "a/b--c", ".a/b", "a/b.", "a /b", "a/b\n", "~/x", "a\\b/c", "", "a/" + "x" * 200])
def test_invalid_repo_ids(bad):
    with pytest.raises(InvalidNameError, match="invalid repo id"):
        validate_repo_id(bad)


@pytest.mark.parametrize("ok", ["main", "step0", "stage1-step200-tokens0.000410B", "0" * 40])
def test_valid_revisions(ok):
    assert validate_revision(ok) == ok


@pytest.mark.parametrize("bad", ["", "..", "../main", "a/b", "/abs", "step0/..", "a..b", ".hidden", "x\x00",
                                 "refs/heads/main", "step 1"])
def test_invalid_revisions(bad):
    with pytest.raises(InvalidNameError, match="invalid revision"):
        validate_revision(bad)


@given(st.text(max_size=40))
def test_accepted_names_never_traverse(name):
    for check in (validate_revision, validate_repo_file):
        try:
            check(name)
        except InvalidNameError:
            continue
        parts = name.split("/")
        assert ".." not in parts and not name.startswith("/") and "\\" not in name and "\x00" not in name


def test_repo_files():
    assert validate_repo_file("model-00001-of-00002.safetensors")
    assert validate_repo_file("sub/config.json")
    for bad in ("../x", "a/../../b", "/x", "a//b", "./a", ""):
        with pytest.raises(InvalidNameError):
            validate_repo_file(bad)


def test_safe_join(tmp_path):
    assert safe_join(tmp_path, "a", "b") == (tmp_path / "a" / "b").resolve()
    with pytest.raises(InvalidNameError, match="leaves"):
        safe_join(tmp_path, "..", "x")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(InvalidNameError):
        safe_join(tmp_path, "link", "etc")


def test_closest_names_by_spelling_and_by_step():
    revs = pythia_revisions()
    assert closest_names("step143001", revs)[0] == "step143000"
    assert "step512" in closest_names("step513", revs)
    olmo = ["stage1-step1000-tokens3B", "stage1-step2000-tokens5B"]
    assert closest_names("stage1-step1000-tokens2B", olmo)[0] == "stage1-step1000-tokens3B"


def test_error_messages():
    err = revision_not_found("EleutherAI/pythia-70m", "step1001", pythia_revisions())
    assert isinstance(err, CheckpointSourceError)
    assert "step1001" in str(err) and "step1000" in str(err) and "EleutherAI/pythia-70m" in str(err)
    assert "HF_TOKEN" in str(gated_repo("meta/x"))
