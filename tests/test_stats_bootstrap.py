"""Resampling engine of the across-training intervals: prompt bootstrap and parametric fallback."""

import numpy as np
import pytest
from scipy import stats as sps

from icl_probe.stats.bootstrap import (interval, parametric_scale, prompt_replicates,
                                       replicate_trajectories)


def test_prompt_replicates_with_unit_weights_reproduce_the_ratio_of_sums():
    rng = np.random.default_rng(0)
    num, den = rng.uniform(0, 3, (4, 3, 10)), rng.integers(1, 4, (4, 3, 10)).astype(float)
    w = np.ones((1, 3, 10))
    got = prompt_replicates(num, den, w)[0]
    want = (num.sum(-1) / den.sum(-1)).mean(-1)
    assert got == pytest.approx(want, abs=1e-12)
    assert prompt_replicates(num, None, w)[0] == pytest.approx(num.mean(-1).mean(-1), abs=1e-12)


def test_one_resample_of_prompts_is_shared_by_every_checkpoint():
    # two checkpoints with identical per-prompt values: every replicate is identical at both
    num = np.random.default_rng(1).normal(size=(1, 3, 50))
    reps, method = replicate_trajectories({"x": np.zeros(2)}, samples={"x": {"num": np.repeat(num, 2, 0),
                                                                          "den": None, "group": "g"}},
                                          n_boot=200, seed=0)
    assert method == {"x": "prompt bootstrap"}
    assert np.array_equal(reps["x"][:, 0], reps["x"][:, 1])
    assert reps["x"].std() > 0


def test_prompt_bootstrap_spread_matches_the_standard_error_of_the_mean():
    rng = np.random.default_rng(2)
    num = rng.normal(0, 1.0, (1, 3, 80))
    mean = num.mean(-1).mean(-1)
    reps, _ = replicate_trajectories({"x": mean}, samples={"x": {"num": num, "den": None}}, n_boot=4000, seed=1)
    se = np.sqrt((num.var(-1) / 80).sum()) / 3  # mean of three independent seed means
    assert reps["x"][:, 0].std() == pytest.approx(se, rel=0.06)


def test_parametric_scale_from_intervals_or_from_the_seed_std():
    se, dof = parametric_scale([1.0, 1.0, 1.0], std=[0.3, 0.3, np.nan], ci=([np.nan, 0.8, np.nan], [np.nan, 1.2, np.nan]),
                               n_seeds=3)
    # std over 3 seeds (ddof 0) 0.3 -> se 0.3 / sqrt(2), pooled with its neighbour: t with 4 dof;
    # the interval column wins where present
    assert se[0] == pytest.approx(0.3 / np.sqrt(2)) and dof[0] == 4
    assert se[1] == pytest.approx(0.4 / (2 * sps.norm.ppf(0.975))) and np.isinf(dof[1])
    assert se[2] == 0


def test_pooled_seed_variance_over_neighbouring_checkpoints():
    se, dof = parametric_scale(np.zeros(6), std=[0.1, 0.2, 0.3, 0.4, 0.5, np.nan], n_seeds=3)
    assert se[2] == pytest.approx(np.sqrt(np.mean(np.square([0.1, 0.2, 0.3, 0.4, 0.5])) / 2)) and dof[2] == 10
    assert se[0] == pytest.approx(np.sqrt(np.mean(np.square([0.1, 0.2, 0.3])) / 2)) and dof[0] == 6
    assert se[5] == 0 and dof[4] == 6


def test_parametric_draw_gives_the_t_interval_for_one_checkpoint():
    reps, method = replicate_trajectories({"x": np.array([2.0])}, stds={"x": np.array([0.6])},
                                          n_boot=20000, seed=3, n_seeds=3)
    assert method == {"x": "parametric"}
    lo, hi = np.percentile(reps["x"][:, 0], [2.5, 97.5])
    half = sps.t.ppf(0.975, 2) * 0.6 / np.sqrt(2)
    assert 2 - lo == pytest.approx(half, rel=0.05) and hi - 2 == pytest.approx(half, rel=0.05)


def test_no_spread_no_replicates_and_deterministic_seed():
    assert replicate_trajectories({"x": np.ones(3)}, stds={"x": np.zeros(3)}, n_boot=50) == ({}, {})
    a = replicate_trajectories({"x": np.ones(3)}, stds={"x": np.full(3, 0.1)}, n_boot=50, seed=4)[0]["x"]
    b = replicate_trajectories({"x": np.ones(3)}, stds={"x": np.full(3, 0.1)}, n_boot=50, seed=4)[0]["x"]
    assert np.array_equal(a, b)


def test_interval_kinds_and_the_bias_estimate():
    draws = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    p = interval(2.0, draws, "percentile")
    assert p["ci"] == pytest.approx(list(np.percentile([1, 2, 3, 4], [2.5, 97.5])))
    assert p["bias"] == pytest.approx(0.5) and p["defined_frac"] == pytest.approx(0.8)
    b = interval(2.0, draws, "basic")
    assert b["ci"] == pytest.approx([4 - p["ci"][1], 4 - p["ci"][0]])
    assert interval(None, draws)["ci"] is None
    assert interval(2.0, np.array([1.0, np.nan, np.nan]))["ci"] is None  # defined in a third only


def test_bias_corrected_interval_shifts_toward_the_estimate():
    rng = np.random.default_rng(5)
    draws = rng.normal(1.0, 1.0, 20000)  # replicates centred one sd above the estimate 0
    bc = interval(0.0, draws, "bc")["ci"]
    p = interval(0.0, draws, "percentile")["ci"]
    # z0 = Phi^-1(P(draw < 0)) = -1: the N(1, 1) quantiles at Phi(-2 - 1.96) and Phi(-2 + 1.96),
    # 1 - 3.96 and 1 - 0.04 (the far tail is estimated from few draws: a wider tolerance)
    assert bc[0] == pytest.approx(1 - 3.96, abs=0.2) and bc[1] == pytest.approx(1 - 0.04, abs=0.06)
    assert p == pytest.approx([1 - 1.96, 1 + 1.96], abs=0.06)
    # no bias: the same as the percentile interval
    sym = rng.normal(0.0, 1.0, 20000)
    assert interval(0.0, sym, "bc")["ci"] == pytest.approx(interval(0.0, sym, "percentile")["ci"], abs=0.06)
