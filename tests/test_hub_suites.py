"""Suite facts, revision names, recorded branch lists and the Hub presets (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from icl_probe.hub.selection import select_revisions
from icl_probe.hub.suites import (
    OLMO2_REPOS,
    OLMO2_TOKENS_PER_STEP,
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


# Every real OLMo-2 branch name found in public sources (the recorded lists' headers cite them):
# allenai/OLMo README.md (last stage-1 and stage-2 checkpoints), the 7B's prefix-less first branches
# (Hub discussion "Stage clarifications", docs/checkpoints.md; the model card loads step1000-tokens5B),
# and names public user code loads.
REAL_OLMO2_NAMES = {
    "7b": ["step150-tokens1B", "step600-tokens3B", "step700-tokens3B", "step850-tokens4B",
           "step900-tokens4B", "step2000-tokens9B", "step2150-tokens10B", "step1000-tokens5B",
           "stage1-step150-tokens1B", "stage1-step600-tokens3B", "stage1-step900-tokens4B",
           "stage1-step1000-tokens5B", "stage1-step2150-tokens10B", "stage1-step3000-tokens13B",
           "stage1-step4000-tokens17B", "stage1-step5000-tokens21B", "stage1-step10000-tokens42B",
           "stage1-step11000-tokens47B", "stage1-step12000-tokens51B", "stage1-step15000-tokens63B",
           "stage1-step39000-tokens164B", "stage1-step51000-tokens214B", "stage1-step89000-tokens374B",
           "stage1-step199000-tokens835B", "stage1-step217000-tokens911B",
           "stage1-step431000-tokens1808B", "stage1-step928646-tokens3896B",
           "stage2-ingredient1-step11931-tokens50B", "stage2-ingredient2-step11931-tokens50B",
           "stage2-ingredient3-step11931-tokens50B"],
    "1b": ["stage1-step300-tokens1B", "stage1-step10000-tokens21B", "stage1-step20000-tokens42B",
           "stage1-step23100-tokens49B", "stage1-step30000-tokens63B", "stage1-step1907359-tokens4001B",
           "stage2-ingredient1-step23852-tokens51B", "stage2-ingredient2-step23852-tokens51B",
           "stage2-ingredient3-step23852-tokens51B"],
}


@pytest.mark.parametrize("size", ["1b", "7b"])
def test_every_real_olmo2_name_parses_and_has_its_checkpoint_in_the_recorded_list(size):
    """Each real name parses to (stage, ingredient, step); the recorded list holds a branch of the
    same key (the same name, or one resolve maps it to); stage-1 names with or without prefix
    are stage 1, and a name's T is its tokens to the rounding the Hub uses."""
    per_step = OLMO2_TOKENS_PER_STEP[size]
    recorded = {(b.stage, b.ingredient, b.step) for b in map(parse_branch, checkpoint_revisions(
        read_branch_list(OLMO2_REPOS[size]), stage=None))}
    for name in REAL_OLMO2_NAMES[size]:
        b = parse_branch(name)
        assert b.stage == (2 if name.startswith("stage2") else 1)
        assert (b.ingredient is not None) == name.startswith("stage2")
        assert (b.stage, b.ingredient, b.step) in recorded, name
        assert abs(b.tokens - b.step * per_step) < 1.01e9, name  # T rounded to whole billions


@pytest.mark.parametrize("size,n_stage1,n_stage2", [("1b", 195, 72), ("7b", 936, 36)])
def test_recorded_olmo2_lists(size, n_stage1, n_stage2):
    """The lists hold the real steps (allenai/OLMo's checkpoint tables: 935 stage-1 steps of the 7B
    plus its final 928646, 195 of the 1B; 3 stage-2 ingredients each) and say what is constructed."""
    path = ROOT / "icl_probe" / "data" / "branches" / f"{OLMO2_REPOS[size].replace('/', '__')}.txt"
    header = path.read_text().split("\nmain\n")[0]
    assert "RECORDED" in header and "CONSTRUCTED" in header and "allenai/OLMo@" in header
    names = read_branch_list(OLMO2_REPOS[size])
    stage1 = checkpoint_revisions(names)
    assert len(stage1) == n_stage1
    assert all(parse_branch(r).stage == 1 for r in stage1)
    assert parse_branch(stage1[0]).step == 0
    toks = [parse_branch(r).tokens for r in stage1]
    assert toks == sorted(toks)  # T grows with step, across prefixed and prefix-less names
    stage2 = [checkpoint_revisions(names, stage=2, ingredient=k) for k in (1, 2, 3)]
    assert sum(map(len, stage2)) == n_stage2
    assert [parse_branch(run[-1]).step for run in stage2] == [parse_branch(stage2[0][-1]).step] * 3
    assert [parse_branch(run[0]).step for run in stage2] == [1000] * 3  # each run's steps restart
    if size == "7b":
        assert stage1[:8] == ["stage1-step0-tokens0B", "step150-tokens1B", "step600-tokens3B",
                              "step700-tokens3B", "step850-tokens4B", "step900-tokens4B",
                              "stage1-step1000-tokens5B", "step2000-tokens9B"]


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
