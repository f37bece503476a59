"""Resolving revisions to a manifest, through the local Hub stand-in over HTTP and from a local cache."""

from __future__ import annotations

import hashlib
import json

import pytest

from hub_fixtures import build_hub_cache
from icl_probe.hub.errors import (
    GatedRepoError,
    InvalidNameError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from icl_probe.hub.resolve import flag_duplicates, resolve_model
from icl_probe.hub.suites import PYTHIA_TOKENS_PER_STEP
from icl_probe.hub.testing import serve_hub
from icl_probe.stats.table import probed_revisions

PYTHIA = "EleutherAI/pythia-tiny"
OLMO = "allenai/OLMo-2-tiny"
GATED = "acme/gated-tiny"
OLMO_EARLY = "allenai/OLMo-2-early-tiny"
TOKEN = "hf_test_token"

PYTHIA_REVS = {"step0": 0, "step1": "=step0", "step2": 2, "step8": "=step512", "step512": 512,
               "step1000": 1000}
OLMO_REVS = {
    "stage1-step0-tokens0B": 10,
    "stage1-step200-tokens0.000410B": 11,
    "stage1-step1000-tokens3B": 12,
    "stage1-step2000-tokens5B": "=stage1-step1000-tokens3B",  # two branches serve one file
    "stage1-step3000-tokens7B": 13,
    "stage2-ingredient1-step100-tokens1B": 14,
}
# OLMo-2-1124-7B's real naming: its first stage-1 branches have no stage prefix (names as on the
# Hub, see docs/checkpoints.md), then stage1-...; stage 2 is ingredient runs whose steps restart
OLMO_EARLY_REVS = {
    "step150-tokens1B": 20, "step600-tokens3B": 21, "step2150-tokens10B": 22,
    "stage1-step5000-tokens21B": 23, "stage1-step928646-tokens3896B": 24,
    "stage2-ingredient1-step11931-tokens50B": 25, "stage2-ingredient2-step100-tokens1B": 26,
    "stage2-ingredient2-step11931-tokens50B": 27,
}


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubcache") / "hub"
    commits = {
        PYTHIA: build_hub_cache(root, PYTHIA, PYTHIA_REVS, main="step1000"),
        OLMO: build_hub_cache(root, OLMO, OLMO_REVS, main="stage1-step3000-tokens7B"),
        GATED: build_hub_cache(root, GATED, {"step0": 0, "step1000": 1000}),
        OLMO_EARLY: build_hub_cache(root, OLMO_EARLY, OLMO_EARLY_REVS, main="stage1-step928646-tokens3896B"),
    }
    return root, commits


@pytest.fixture()
def hub(hub_root):
    with serve_hub(hub_root[0], gated={GATED}, tokens={TOKEN}) as h:
        yield h


def _sha(root, repo, commit, name="model.safetensors"):
    org, n = repo.split("/")
    return hashlib.sha256((root / f"models--{org}--{n}" / "snapshots" / commit / name).read_bytes()).hexdigest()


def test_pythia_style_repo_over_http(hub, hub_root, tmp_path):
    root, commits = hub_root
    out = tmp_path / "manifest.json"
    m = resolve_model("pythia", "pythia-tiny", PYTHIA, "hub", "all", out, endpoint=hub.endpoint)
    assert json.loads(out.read_text()) == m  # written, and what was returned
    revs = {e["revision"]: e for e in m["revisions"]}
    assert list(revs) == ["step0", "step1", "step2", "step8", "step512", "step1000"]  # main left out, step order
    for name, e in revs.items():
        assert e["commit"] == commits[PYTHIA][name]
        assert e["tokens"] == e["step"] * PYTHIA_TOKENS_PER_STEP
        assert e["files"] == [{"path": "model.safetensors", "size": e["files"][0]["size"],
                               "sha256": _sha(root, PYTHIA, e["commit"])}]
        assert [a["path"] for a in e["aux_files"]] == ["config.json", "generation_config.json"]
    # documented alias: not a duplicate; undocumented shared file: flagged, owner = later step
    assert revs["step1"]["alias_of"] == "step0" and revs["step1"]["duplicate_of"] is None
    assert revs["step8"]["duplicate_of"] == "step512"
    assert revs["step512"]["duplicate_of"] is None
    assert [e["revision"] for e in probed_revisions(m)] == ["step0", "step1", "step2", "step512", "step1000"]
    assert m["tokenizer"]["revision"] == "step1000"
    assert {f["path"] for f in m["tokenizer"]["files"]} >= {"tokenizer.json", "tokenizer_config.json"}
    # resolving downloads nothing: only refs and trees were read
    assert hub.count(contains="/resolve/") == 0


def test_olmo_style_repo_stage1_and_tokens_from_names(hub, tmp_path):
    m = resolve_model("olmo2", "olmo2-tiny", OLMO, "hub", "all", tmp_path / "m.json", endpoint=hub.endpoint)
    revs = {e["revision"]: e for e in m["revisions"]}
    assert list(revs) == ["stage1-step0-tokens0B", "stage1-step200-tokens0.000410B", "stage1-step1000-tokens3B",
                          "stage1-step2000-tokens5B", "stage1-step3000-tokens7B"]  # stage 2 left out
    assert revs["stage1-step200-tokens0.000410B"]["tokens"] == 410_000
    assert revs["stage1-step1000-tokens3B"]["tokens"] == 3_000_000_000
    assert all(e["stage"] == 1 for e in revs.values())
    assert revs["stage1-step1000-tokens3B"]["duplicate_of"] == "stage1-step2000-tokens5B"
    assert m["n_branches"] == 5
    m2 = resolve_model("olmo2", "olmo2-tiny", OLMO, "hub", "log:3", None, endpoint=hub.endpoint, stage=None)
    assert [e["revision"] for e in m2["revisions"]] == [
        "stage1-step0-tokens0B", "stage2-ingredient1-step100-tokens1B", "stage1-step3000-tokens7B"]


def test_stage1_names_with_and_without_prefix_are_one_trajectory_and_each_ingredient_its_own(hub, tmp_path):
    m = resolve_model("olmo2", "olmo2-early", OLMO_EARLY, "hub", "all", None, endpoint=hub.endpoint)
    assert [(e["revision"], e["step"], e["tokens"], e["stage"]) for e in m["revisions"]] == [
        ("step150-tokens1B", 150, 10**9, 1), ("step600-tokens3B", 600, 3 * 10**9, 1),
        ("step2150-tokens10B", 2150, 10 * 10**9, 1), ("stage1-step5000-tokens21B", 5000, 21 * 10**9, 1),
        ("stage1-step928646-tokens3896B", 928646, 3896 * 10**9, 1)]
    assert m["n_branches"] == 5 and "ingredient" not in m
    for k, steps in ((1, [11931]), (2, [100, 11931])):
        mk = resolve_model("olmo2", f"olmo2-early-i{k}", OLMO_EARLY, "hub", "all", None, endpoint=hub.endpoint,
                           stage=2, ingredient=k)
        assert [e["step"] for e in mk["revisions"]] == steps and mk["ingredient"] == k
        assert all(e["stage"] == 2 and e["ingredient"] == k for e in mk["revisions"])
        assert all(e["revision"].startswith(f"stage2-ingredient{k}-") for e in mk["revisions"])


def test_local_cache_gives_the_hub_manifest(hub, hub_root, tmp_path):
    root, _ = hub_root
    via_hub = resolve_model("pythia", "p", PYTHIA, "hub", "log:4", None, endpoint=hub.endpoint)
    local = resolve_model("pythia", "p", PYTHIA, "minisuite", "log:4", tmp_path / "m.json", cache_dir=root)
    assert local["source"] == "local" and local["cache_dir"] == str(root)
    assert via_hub["revisions"] == local["revisions"]
    assert via_hub["tokenizer"] == local["tokenizer"]


def test_recorded_branch_list_checked_against_the_source(hub, tmp_path):
    listing = tmp_path / "branches.txt"
    listing.write_text("# recorded for the test\nstep0\nstep2\nstep1000\nstep3000\n")
    m = resolve_model("pythia", "p", PYTHIA, "hub", ["step2", "step1000"], None, endpoint=hub.endpoint,
                      branch_list=listing)
    assert [e["revision"] for e in m["revisions"]] == ["step2", "step1000"]
    with pytest.raises(RevisionNotFoundError) as err:
        resolve_model("pythia", "p", PYTHIA, "hub", "all", None, endpoint=hub.endpoint, branch_list=listing)
    assert "step3000" in str(err.value) and "step1000" in err.value.closest


def test_missing_revision_names_the_closest(hub):
    with pytest.raises(RevisionNotFoundError) as err:
        resolve_model("pythia", "p", PYTHIA, "hub", ["step2", "step513"], None, endpoint=hub.endpoint)
    assert "step513" in str(err.value)
    assert "step512" in err.value.closest


def test_missing_repo(hub, hub_root):
    with pytest.raises(RepoNotFoundError, match="does not exist"):
        resolve_model("pythia", "p", "EleutherAI/pythia-nope", "hub", "all", None, endpoint=hub.endpoint)
    with pytest.raises(RepoNotFoundError, match="local cache"):
        resolve_model("mini", "p", "mini/nope", "local", "all", None, cache_dir=hub_root[0])


def test_gated_repo_without_and_with_token(hub):
    with pytest.raises(GatedRepoError, match="HF_TOKEN"):
        resolve_model("g", "g", GATED, "hub", "all", None, endpoint=hub.endpoint, token=False)
    m = resolve_model("g", "g", GATED, "hub", "all", None, endpoint=hub.endpoint, token=TOKEN)
    assert [e["revision"] for e in m["revisions"]] == ["step0", "step1000"]


@pytest.mark.parametrize("repo_id", ["../etc", "/abs/path", "a/../b", "a/b/c", "a--b/c", "a/b\n", "", "a/.b"])
def test_invalid_repo_id_rejected_before_any_request(hub, hub_root, repo_id):
    with pytest.raises(InvalidNameError):
        resolve_model("s", "m", repo_id, "hub", "all", None, endpoint=hub.endpoint)
    with pytest.raises(InvalidNameError):
        resolve_model("s", "m", repo_id, "local", "all", None, cache_dir=hub_root[0])
    assert hub.requests == []


@pytest.mark.parametrize("revision", ["../step0", "step0/../../x", "/abs", "..", "a b", "step0\x00"])
def test_invalid_revision_rejected(hub, revision):
    with pytest.raises(InvalidNameError):
        resolve_model("pythia", "p", PYTHIA, "hub", "all", None, endpoint=hub.endpoint, branch_list=[revision])


def test_flag_duplicates_partial_shard_overlap_and_aliases():
    def e(rev, step, shas):
        return {"revision": rev, "step": step, "files": [{"sha256": s} for s in shas],
                "duplicate_of": None, "alias_of": None}

    # pythia-2.8b-like: early branches serve main's file; pythia-12b-like: one shard of the final
    entries = [e("step0", 0, ["F"]), e("step1", 1, ["F"]), e("step2", 2, ["F"]), e("step1000", 1000, ["a", "b"]),
               e("step50000", 50000, ["F1", "x2"]), e("step143000", 143000, ["F1", "F2"]), e("step7", 7, ["F"])]
    entries[-1]["step"] = 143001  # a later holder of F
    flag_duplicates(entries, aliases=[("step0", "step1")])
    got = {x["revision"]: (x["duplicate_of"], x["alias_of"]) for x in entries}
    assert got["step0"] == ("step7", None)
    assert got["step1"] == ("step7", "step0")  # an alias follows its original
    assert got["step2"] == ("step7", None)
    assert got["step1000"] == (None, None)
    assert got["step50000"] == ("step143000", None)
    assert got["step143000"] == (None, None)


def test_recorded_names_matched_by_stage_and_step(hub, tmp_path):
    listing = tmp_path / "olmo.txt"
    listing.write_text("stage1-step0-tokens0B\nstage1-step1000-tokens2B\n")  # T rounded differently
    m = resolve_model("olmo2", "o", OLMO, "hub", "all", None, endpoint=hub.endpoint, branch_list=listing)
    e = m["revisions"][1]
    assert e["revision"] == "stage1-step1000-tokens3B" and e["recorded_as"] == "stage1-step1000-tokens2B"
    assert e["tokens"] == 3_000_000_000  # the source's name decides


def test_a_recorded_name_with_or_without_the_stage_prefix_finds_the_hubs_branch(hub, tmp_path):
    """Public sources spell the 7B's first branches both ways (step150-tokens1B on the Hub's
    discussion, stage1-step150-tokens1B in user code): either recorded spelling resolves to the
    branch the Hub serves, and the Hub's name is the one used."""
    listing = tmp_path / "olmo7b.txt"
    listing.write_text("stage1-step150-tokens1B\nstep600-tokens3B\nstep5000-tokens21B\n")
    m = resolve_model("olmo2", "o", OLMO_EARLY, "hub", "all", None, endpoint=hub.endpoint, branch_list=listing)
    got = [(e["revision"], e.get("recorded_as")) for e in m["revisions"]]
    assert got == [("step150-tokens1B", "stage1-step150-tokens1B"), ("step600-tokens3B", None),
                   ("stage1-step5000-tokens21B", "step5000-tokens21B")]


def test_preset_path_recorded_pythia_list_over_http(tmp_path):
    """presets/pythia.yaml's way: the shipped list, log:12, checked against the (stand-in) Hub."""
    from icl_probe.hub.selection import select_revisions
    from icl_probe.hub.suites import checkpoint_revisions, read_branch_list

    repo = "EleutherAI/pythia-14m"
    wanted = select_revisions(checkpoint_revisions(read_branch_list(repo)), "log:12")
    root = tmp_path / "hub"
    build_hub_cache(root, repo, {r: i for i, r in enumerate(wanted)} | {"main": "=step143000"}, tokenizer=False)
    with serve_hub(root) as h:
        m = resolve_model("pythia", "pythia-14m", repo, "hub", "log:12", tmp_path / "m.json",
                          endpoint=h.endpoint, branch_list="recorded")
        assert [e["revision"] for e in m["revisions"]] == wanted
        assert all(e["duplicate_of"] is None for e in m["revisions"])
        assert h.count(contains="/tree/") == 12
        with pytest.raises(RevisionNotFoundError):  # a name the Hub lacks is an error, not skipped
            resolve_model("pythia", "pythia-14m", repo, "hub", ["step1000"], None, endpoint=h.endpoint,
                          branch_list="recorded")


def test_local_tokens_per_step_from_the_builders_record(tmp_path):
    from icl_probe.io import write_json

    root = tmp_path / "hub"
    build_hub_cache(root, "mini/pythia-x", {"step0": 0, "step100": 1}, tokenizer=False)
    write_json(root / "models--mini--pythia-x" / "icl_probe_build.json", {"tokens_per_step": 2048})
    m = resolve_model("mini", "pythia-x", "mini/pythia-x", "minisuite", "all", None, cache_dir=root)
    assert [e["tokens"] for e in m["revisions"]] == [0, 204800] and m["tokens_per_step"] == 2048


def test_duplicate_and_corrupt_checkpoints_are_told_apart_over_http(tmp_path):
    """The two patterns found on the Hub, served by the stand-in with sharded safetensors:
    pythia-2.8b's early branches serving final-era weights in two distinct blobs (full
    duplicates of two later checkpoints) and pythia-12b's step50000 serving the final
    checkpoint's first shard beside shards of its own (corrupt). Both are flagged
    ``duplicate_of`` (skipped: never fetched nor probed); ``integrity`` says which is which."""
    root = tmp_path / "hub"
    repo = "EleutherAI/pythia-sharded-tiny"
    revs = {"step1000": "=step143000", "step2000": "=step143000", "step3000": "=step142000",
            "step4000": "=step142000", "step5000": 5, "step50000": 50, "step142000": 142, "step143000": 143}
    build_hub_cache(root, repo, revs, main="step143000", max_shard_size="20KB")
    org, name = repo.split("/")
    snaps = root / f"models--{org}--{name}" / "snapshots"
    commit = {b: (root / f"models--{org}--{name}" / "refs" / b).read_text() for b in revs}
    shards = sorted(p.name for p in (snaps / commit["step143000"]).glob("model-*.safetensors"))
    assert len(shards) >= 3
    # pythia-12b's pattern: step50000's first shard is the final checkpoint's
    (snaps / commit["step50000"] / shards[0]).write_bytes((snaps / commit["step143000"] / shards[0]).read_bytes())
    with serve_hub(root) as hub:
        m = resolve_model("pythia", "p", repo, "hub", "all", tmp_path / "m.json", endpoint=hub.endpoint)
    got = {e["revision"]: (e["duplicate_of"], e["integrity"]) for e in m["revisions"]}
    n = len(shards)
    assert got == {
        "step1000": ("step143000", "duplicate of step143000"), "step2000": ("step143000", "duplicate of step143000"),
        "step3000": ("step142000", "duplicate of step142000"), "step4000": ("step142000", "duplicate of step142000"),
        "step5000": (None, None), "step50000": ("step143000", f"corrupt: shard 1 of {n} is step143000's"),
        "step142000": (None, None), "step143000": (None, None)}
    assert [e["revision"] for e in probed_revisions(m)] == ["step5000", "step142000", "step143000"]
    # QC reports them differently and names each
    from icl_probe.stats import qc

    issues = qc.duplicate_weights(m, {}, qc.manifest_canonical(m))
    by_reason = {i["reason"]: i for i in issues}
    assert set(by_reason) == {"duplicate weights", qc.CORRUPT_SHARDS}
    assert by_reason[qc.CORRUPT_SHARDS]["details"] == {"step50000": f"corrupt: shard 1 of {n} is step143000's"}
    text = qc.excluded_details(issues)
    assert "step1000 duplicate of step143000" in text and "step3000 duplicate of step142000" in text
    assert f"step50000 corrupt: shard 1 of {n} is step143000's" in text
