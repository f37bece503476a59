"""Suite facts, revision names, recorded branch lists and the Hub presets (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from icl_probe.hub.selection import select_revisions
from icl_probe.hub.suites import (
    OLMO2_REPOS,
    parse_branch,
    PYTHIA_DEDUPED_SIZES,
    PYTHIA_SIZES,
    PYTHIA_TOKENS_PER_STEP,
    checkpoint_revisions,
    default_tokens_per_step,
    parse_revision,
    pythia_repo_id,
    pythia_revisions,
    read_branch_list,
    tokens_for,
)

ROOT = Path(__file__).resolve().parents[1]


def test_pythia_schedule():
    revs = pythia_revisions()
    assert len(revs) == 154
    assert revs[:12] == ["step0", "step1", "step2", "step4", "step8", "step16", "step32", "step64", "step128",
                         "step256", "step512", "step1000"]
    assert revs[-1] == "step143000"
    steps = [parse_revision(r)[0] for r in revs]
    assert steps == sorted(set(steps))
    assert tokens_for("step1000", PYTHIA_TOKENS_PER_STEP) == 1000 * 2_097_152
    assert [pythia_repo_id(s) for s in PYTHIA_SIZES][0] == "EleutherAI/pythia-14m"
    assert pythia_repo_id("70m", deduped=True) == "EleutherAI/pythia-70m-deduped"
    with pytest.raises(ValueError, match="deduped"):
        pythia_repo_id("14m", deduped=True)
    assert default_tokens_per_step("pythia", "EleutherAI/pythia-160m") == PYTHIA_TOKENS_PER_STEP


@pytest.mark.parametrize("name,expected", [
    ("step0", (0, None, None)),
    ("step143000", (143000, None, None)),
    ("stage1-step1000-tokens3B", (1000, 3_000_000_000, 1)),
    ("stage1-step200-tokens0.000410B", (200, 410_000, 1)),
    ("stage1-step200-tokens0.00041B", (200, 410_000, 1)),
    ("stage2-ingredient3-step11931-tokens50B", (11931, 50_000_000_000, 2)),
    ("stage1-step928646-tokens3896B", (928646, 3_896_000_000_000, 1)),
])
def test_parse_revision(name, expected):
    assert parse_revision(name) == expected


@pytest.mark.parametrize("name,expected", [
    ("step150-tokens1B", (150, 10**9, 1, None)),  # OLMo-2-1124-7B's first branches: no stage prefix
    ("step2150-tokens10B", (2150, 10 * 10**9, 1, None)),
    ("stage1-step1000-tokens5B", (1000, 5 * 10**9, 1, None)),
    ("stage2-ingredient2-step11931-tokens50B", (11931, 50 * 10**9, 2, 2)),
    ("step7", (7, None, None, None)),
])
def test_parse_branch(name, expected):
    assert tuple(parse_branch(name)) == expected


def test_stage1_with_and_without_prefix_is_one_trajectory_and_an_ingredient_its_own():
    names = ["main", "step150-tokens1B", "stage1-step1000-tokens5B", "step600-tokens3B",
             "stage2-ingredient1-step10-tokens1B", "stage2-ingredient2-step10-tokens1B", "stage2-ingredient2-step5-tokens0B"]
    assert checkpoint_revisions(names) == ["step150-tokens1B", "step600-tokens3B", "stage1-step1000-tokens5B"]
    assert checkpoint_revisions(names, stage=2, ingredient=2) == ["stage2-ingredient2-step5-tokens0B",
                                                                   "stage2-ingredient2-step10-tokens1B"]
    assert checkpoint_revisions(names, stage=2, ingredient=1) == ["stage2-ingredient1-step10-tokens1B"]


@pytest.mark.parametrize("name", ["main", "step", "step-1", "stepx", "stage1-step10", "stage1-step1-tokens3",
                                  "v1.0", "Step10", "step10 ", "stage1-step1-tokens.5B"])
def test_parse_revision_rejects_non_checkpoints(name):
    with pytest.raises(ValueError, match="not a checkpoint"):
        parse_revision(name)


def test_checkpoint_revisions_filters_stage_and_main():
    names = ["main", "stage1-step20-tokens1B", "stage1-step3-tokens1B", "stage2-ingredient1-step5-tokens9B", "step7"]
    assert checkpoint_revisions(names) == ["stage1-step3-tokens1B", "step7", "stage1-step20-tokens1B"]
    assert checkpoint_revisions(names, stage=2) == ["stage2-ingredient1-step5-tokens9B", "step7"]
    assert len(checkpoint_revisions(names, stage=None)) == 4


@pytest.mark.parametrize("size,deduped", [(s, False) for s in PYTHIA_SIZES] + [(s, True) for s in PYTHIA_DEDUPED_SIZES])
def test_recorded_pythia_lists_are_the_schedule(size, deduped):
    names = read_branch_list(pythia_repo_id(size, deduped))
    assert checkpoint_revisions(names) == pythia_revisions()
    assert "main" in names


@pytest.mark.parametrize("size,n_min", [("1b", 150), ("7b", 900)])
def test_recorded_olmo2_lists(size, n_min):
    path = ROOT / "icl_probe" / "data" / "branches" / f"{OLMO2_REPOS[size].replace('/', '__')}.txt"
    assert "CONSTRUCTED" in path.read_text().splitlines()[0]
    names = read_branch_list(OLMO2_REPOS[size])
    revs = checkpoint_revisions(names)
    assert len(revs) >= n_min
    assert all(parse_revision(r)[2] == 1 for r in revs)
    assert parse_revision(revs[0])[0] == 0
    # T grows with step
    toks = [parse_revision(r)[1] for r in revs]
    assert toks == sorted(toks)


def test_read_branch_list_unknown_repo():
    with pytest.raises(FileNotFoundError, match="no recorded branch list"):
        read_branch_list("nobody/nothing")


@pytest.mark.parametrize("preset,n_models", [("pythia", 9), ("olmo2", 2)])
def test_presets_build_their_revisions_offline(preset, n_models):
    from icl_probe.config import load_config

    cfg = load_config(ROOT / "presets" / f"{preset}.yaml")
    (suite,) = cfg["suites"].values()
    assert suite["source"] == "hub" and suite["branch_list"] == "recorded"
    assert len(suite["models"]) == n_models
    for model in suite["models"].values():
        revs = select_revisions(checkpoint_revisions(read_branch_list(model["repo_id"]), stage=model.get("stage", 1)),
                                model["revisions"])
        assert len(revs) == 12
    raw = yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text())
    assert "pythia-2.8b" not in raw["suites"][preset]["models"]
