"""Adaptive refinement (icl_probe.refine): the bisection, the round's decisions, and a whole
refinement of a constructed trajectory against the dense sweep of the same schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icl_probe.aggregate import replay_refinement, restrict_manifest
from icl_probe.config import ConfigError
from icl_probe.refine import (bracket_status, plan_round, pool_of, refine_round,
                              resolve_selection, split_point, transition_bracket)
from icl_probe.stats.model import induction_transition, settings
from icl_probe.stats.synthetic import default_curves, write_model

SCHEDULE = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 500, 1000, 1500, 2000, 2500, 3000]
POOL = {f"step{s}": s for s in SCHEDULE}


def test_split_point_is_the_branch_nearest_the_log_middle():
    # [32, 1000]: middle 10**((log10 32 + 3) / 2) = 178; log10 distances: 128 -> 0.145, 256 -> 0.156
    mid = (math.log10(32) + 3) / 2
    assert abs(math.log10(128) - mid) < abs(math.log10(256) - mid)
    assert split_point(POOL, 32, 1000, taken=set(), edge=0.1) == "step128"
    assert split_point(POOL, 32, 1000, taken={"step128"}, edge=0.1) == "step256"
    # a bracket from step 0 uses the edge (0.1, log10 -1): middle of [-1, log10 8] is 10**-0.05 ~ 0.89
    assert split_point(POOL, 0, 8, taken=set(), edge=0.1) == "step1"
    assert split_point(POOL, 128, 256, taken=set(), edge=0.1) is None


def test_bracket_status():
    assert bracket_status([128, 256], POOL, set(), "adjacent") == "adjacent"
    assert bracket_status([1000, 2000], POOL, set(), "adjacent") == "open"
    assert bracket_status([1000, 2000], POOL, set(), 2.0) == "resolution"
    assert bracket_status([1000, 2000], POOL, set(), 1.4) == "open"
    assert bracket_status([1000, 2000], POOL, {"step1500"}, "adjacent") == "exhausted"
    # a bracket starting at step 0 has no ratio: only adjacency ends it
    assert bracket_status([0, 4], POOL, set(), 100.0) == "open"


def _stats(half_max=None, zero=None, induction=None) -> dict:
    st = {"half_max_step": None if half_max is None else half_max[1], "half_max_bracket": half_max,
          "zero_crossing_lo": None if zero is None else zero[0], "zero_crossing_hi": None if zero is None else zero[1],
          "induction_transition": {"defined": induction is not None, "bracket": induction,
                                   "note": None if induction else "no induction transition: rises by 0.01"}}
    return {"statistics": st, "null": {"half_max_step": "no emergence"} if half_max is None else {},
            "skipped": {}, "excluded": False}


def test_plan_round_splits_each_open_bracket_once_and_respects_the_budget():
    stats = _stats(half_max=[32, 1000], zero=[32, 1000], induction=[1000, 2000])
    added, state = plan_round(stats, POOL, ["step0", "step32", "step1000", "step2000"],
                              ["half_max", "zero_crossing", "induction"], "adjacent", budget_left=5)
    assert added == ["step128", "step1500"]  # the shared bracket is split once
    assert state["half_max"]["split"] == state["zero_crossing"]["split"] == "step128"
    assert {v["status"] for v in state.values()} == {"refining"}
    added, state = plan_round(stats, POOL, [], ["induction", "half_max"], "adjacent", budget_left=1)
    assert added == ["step1500"]
    assert state["half_max"]["status"] == "budget spent" and state["half_max"]["split"] is None


def test_plan_round_reports_an_undefined_transition_with_its_reason():
    added, state = plan_round(_stats(induction=[128, 256]), POOL, [], ["half_max", "induction"], "adjacent", 5)
    assert added == []
    assert state["half_max"] == {"bracket": None, "status": "undefined", "note": "no emergence", "split": None}
    assert state["induction"]["status"] == "adjacent"
    with pytest.raises(ValueError, match="unknown transition"):
        transition_bracket(_stats(), "llc")


def test_induction_transition_is_the_half_rise_and_needs_a_rise_above_noise():
    steps = np.array([0, 10, 100, 1000, 10000.0])
    acc = np.array([0.0, 0.0, 0.2, 0.8, 0.8])
    it = induction_transition(steps, acc, np.full(5, 0.01), rise_min=0.1)
    # level 0.4 between 100 (0.2) and 1000 (0.8): 10**(2 + 1/3) in log10 step
    assert it["defined"] and it["bracket"] == [100.0, 1000.0]
    assert it["interpolated"] == pytest.approx(10 ** (2 + 1 / 3))
    flat = induction_transition(steps, acc * 0.1, np.full(5, 0.01), rise_min=0.1)
    assert not flat["defined"] and flat["interpolated"] is None and "rises by 0.08" in flat["note"]
    noisy = induction_transition(steps, acc, np.full(5, 0.5), rise_min=0.1)  # threshold 2 x 0.5 = 1.0
    assert not noisy["defined"] and noisy["threshold"] == pytest.approx(1.0)


def test_the_pool_leaves_out_duplicated_and_aliased_branches():
    manifest = {"revisions": [{"revision": "step1", "step": 1, "duplicate_of": "step8"},
                              {"revision": "step8", "step": 8, "duplicate_of": None},
                              {"revision": "step2", "step": 2, "alias_of": "step1", "duplicate_of": "step8"}]}
    assert pool_of(manifest) == {"step8": 8}


def test_resolve_selection_is_the_coarse_range():
    assert resolve_selection({"revisions": "log:4"}, ["step0", "step5500"]) == "log:4"
    assert resolve_selection({"revisions": "log:4", "refine": {}}, ["step0", "step5500"]) == "log:4"
    assert resolve_selection({"revisions": "log:4", "refine": {"budget": 3}}, ["step4", "step5500"]) == \
        "range:4-5500"


def test_restrict_manifest_names_an_unknown_revision():
    manifest = {"repo_id": "a/b", "revisions": [{"revision": "step1"}, {"revision": "step2"}]}
    assert [e["revision"] for e in restrict_manifest(manifest, ["step2"])["revisions"]] == ["step2"]
    with pytest.raises(ConfigError, match="step3"):
        restrict_manifest(manifest, ["step3"])


# a Pythia-like schedule of 154 branches: 0, 1, 2, ..., 512, then every 1000 to 143000
PYTHIA_SCHEDULE = [0] + [2 ** k for k in range(10)] + list(range(1000, 143001, 1000))


def _refine_to_the_end(tmp_path, coarse, cfg):
    write_model(tmp_path, "syn", "m", steps=PYTHIA_SCHEDULE, curves=default_curves(PYTHIA_SCHEDULE), std=0.02)
    out = replay_refinement(tmp_path, {"bootstrap": 50}, coarse, cfg)
    return out["rounds"], out["final"], out["dense"]


def test_refinement_brackets_every_transition_by_adjacent_branches_like_the_dense_sweep(tmp_path):
    coarse = [f"step{s}" for s in (0, 8, 128, 2000, 16000, 143000)]
    rounds, final, dense = _refine_to_the_end(tmp_path, coarse, {"budget": 40})
    last = rounds[-1]
    index = {s: i for i, s in enumerate(PYTHIA_SCHEDULE)}
    for name, state in last["transitions"].items():
        assert state["status"] == "adjacent", (name, state)
        lo, hi = state["bracket"]
        assert index[hi] == index[lo] + 1, (name, state)
    st, dst = final["statistics"], dense["statistics"]
    assert st["half_max_step"] == dst["half_max_step"]
    assert st["half_max_step_interp"] == pytest.approx(dst["half_max_step_interp"])
    assert [st["zero_crossing_lo"], st["zero_crossing_hi"]] == [dst["zero_crossing_lo"], dst["zero_crossing_hi"]]
    assert st["induction_transition"]["bracket"] == dst["induction_transition"]["bracket"]
    # far fewer checkpoints than the dense sweep: bisection needs about log2 of each bracket's branches
    assert last["n_dense"] == len(PYTHIA_SCHEDULE)
    assert last["n_checkpoints"] <= 0.2 * last["n_dense"], last["n_checkpoints"]
    assert last["budget_used"] == last["n_checkpoints"] - len(coarse)
    assert len(rounds) >= 3


def test_refinement_stops_at_the_budget_and_says_so(tmp_path):
    coarse = [f"step{s}" for s in (0, 8, 128, 2000, 16000, 143000)]
    rounds, final, _ = _refine_to_the_end(tmp_path, coarse, {"budget": 2, "transitions": ["half_max"]})
    last = rounds[-1]
    assert last["budget_used"] == 2 and last["n_checkpoints"] == len(coarse) + 2
    assert last["transitions"]["half_max"]["status"] == "budget spent"
    assert last["done"]
