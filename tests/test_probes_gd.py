"""GD readout: every row of the spec's table on hand-computed examples."""

import numpy as np
import pytest
from scipy import stats

from icl_probe.probes.common import summarise
from icl_probe.probes.gd_readout import PROMPT_AXES, SCALARS, expected_digit, gd_metrics, per_prompt


def test_expected_digit():
    assert expected_digit(np.zeros(10)) == pytest.approx(4.5)
    z = np.full((2, 10), -50.0)
    z[0, 7] = z[1, 2] = 50.0
    np.testing.assert_allclose(expected_digit(z), [7.0, 2.0])
    z = np.zeros(10)
    z[[3, 5]] = 100.0
    assert expected_digit(z) == pytest.approx(4.0)


def halving_example():
    """Two prompts, L = 2; the residual halves at every layer."""
    y_star = np.array([4.0, 2.0])
    y_hat = np.array([[0.0, 0.0], [2.0, 1.0], [3.0, 1.5]])  # r = [4,2], [2,1], [1,.5]
    x_ctx = np.array([[1.0, 2.0], [0.0, 3.0]])
    return y_hat, y_star, x_ctx


def test_hand_computed_halving():
    m = gd_metrics(*halving_example())
    np.testing.assert_allclose(m["mean_err"], [3.0, 1.5, 0.75])
    assert m["mean_err_embed"] == 3.0 and m["mean_err_final"] == 0.75
    assert m["error_reduction"] == pytest.approx(2.25)
    # dy = 0.5 r exactly
    assert m["slope_alpha"] == pytest.approx(0.5)
    assert m["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert m["r"] == pytest.approx(1.0) and m["r2"] == pytest.approx(1.0)
    assert m["sign_agreement"] == 1.0
    assert m["rho_pred"] == pytest.approx(0.5)
    assert m["rho_obs"] == pytest.approx(0.5)
    assert m["rate_rel_error"] == pytest.approx(0.0, abs=1e-12)
    assert m["contracting_frac"] == 1.0
    # pooled l = [0,0,1,1,2,2], -abs r = [-4,-2,-2,-1,-1,-0.5]
    ref = stats.spearmanr([0, 0, 1, 1, 2, 2], [-4, -2, -2, -1, -1, -0.5]).statistic
    assert m["depth_rho"] == pytest.approx(ref)
    assert np.isnan(m["curvature_corr"])  # both prompts contract at 0.5: no spread in rho_p
    assert set(SCALARS) <= set(m)


def test_sign_agreement_skips_zero_moves_and_contracting_frac():
    y_star = np.array([2.0])
    y_hat = np.array([[0.0], [3.0], [3.0], [4.0]])  # r = 2, -1, -1, -2; dy = 3, 0, 1
    m = gd_metrics(y_hat, y_star, np.zeros((1, 2)))
    assert m["sign_agreement"] == 0.5  # l=0 agrees, l=1 skipped (dy=0), l=2 disagrees
    assert m["contracting_frac"] == 0.0  # abs r_L = abs r_0
    assert m["error_reduction"] == 0.0
    slope, intercept = np.polyfit([2.0, -1.0, -1.0], [3.0, 0.0, 1.0], 1)
    assert m["slope_alpha"] == pytest.approx(slope) and m["intercept"] == pytest.approx(intercept)
    assert m["r"] == pytest.approx(np.corrcoef([2.0, -1.0, -1.0], [3.0, 0.0, 1.0])[0, 1])


def test_rates_and_curvature():
    rho = np.array([0.5, 0.25, 0.8])
    c = np.array([3.0, 1.0, 2.0])
    L = 4
    r = c[None, :] * rho[None, :] ** np.arange(L + 1)[:, None]
    y_star = np.array([9.0, 5.0, 7.0])
    y_hat = y_star[None, :] - r
    x_ctx = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]])  # a_p = 1, 4, 2
    m = gd_metrics(y_hat, y_star, x_ctx)
    assert m["curvature_corr"] == pytest.approx(np.corrcoef([1.0, 4.0, 2.0], rho)[0, 1])
    # pooled log-linear slope of log|r| = log c_p + l log rho_p is mean(log rho_p)
    assert m["rho_obs"] == pytest.approx(np.exp(np.log(rho).mean()))
    slope = np.polyfit(r[:-1].ravel(), np.diff(y_hat, axis=0).ravel(), 1)[0]  # all L x P = 12 (l, p)
    assert m["slope_alpha"] == pytest.approx(slope)
    assert m["rho_pred"] == pytest.approx(1 - slope)
    assert m["rate_rel_error"] == pytest.approx(abs(1 - slope - m["rho_obs"]) / m["rho_obs"])
    assert m["depth_rho"] == pytest.approx(
        stats.spearmanr(np.repeat(np.arange(L + 1), 3), -np.abs(r).ravel()).statistic)
    # mean_err[l] = mean over prompts of c_p rho_p^l, for l = 0 (embedding) .. L
    np.testing.assert_allclose(m["mean_err"], (c[None, :] * rho[None, :] ** np.arange(L + 1)[:, None]).mean(axis=1))


def test_log_fit_skips_exact_answers():
    y_star = np.array([4.0, 4.0])
    y_hat = np.array([[0.0, 2.0], [2.0, 4.0], [3.0, 4.0]])  # prompt 2 reaches r = 0
    m = gd_metrics(y_hat, y_star, np.array([[1.0], [2.0]]))
    # kept points: (0, log 4), (1, log 2), (2, log 1), (0, log 2)
    s = np.polyfit([0, 1, 2, 0], np.log([4.0, 2.0, 1.0, 2.0]), 1)[0]
    assert m["rho_obs"] == pytest.approx(np.exp(s))
    assert np.isfinite(m["rho_obs"])
    assert np.isnan(m["curvature_corr"])  # prompt 2 has a single usable layer


def test_identity_forward_pass_gives_zero_reduction():
    y_hat = np.tile(np.array([[3.0, 5.0, 1.0]]), (4, 1))
    m = gd_metrics(y_hat, np.array([4.0, 4.0, 4.0]), np.ones((3, 2)))
    assert m["error_reduction"] == 0.0
    assert m["slope_alpha"] == 0.0 and np.isnan(m["r"])  # dy = 0 everywhere
    assert np.isnan(m["sign_agreement"])  # no layer moves
    assert m["contracting_frac"] == 0.0


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    return num.mean() if den is None else num.sum() / np.asarray(den, dtype=np.float64).sum()


def _random_seed_inputs(rng, n_layers=5, n_prompts=7):
    y_hat = rng.uniform(0, 9, size=(n_layers + 1, n_prompts))
    y_hat[3, :4] = y_hat[2, :4]  # some layers do not move the readout: dy exactly 0
    y_hat[1:, 5] = y_hat[0, 5]  # a prompt that never moves: den 0
    return {"y_hat": y_hat, "y_star": rng.uniform(0, 9, size=n_prompts), "x_ctx": rng.normal(size=(n_prompts, 3))}


def test_per_prompt_sums_give_the_scalars():
    rng = np.random.default_rng(3)
    seeds = [_random_seed_inputs(rng) for _ in range(3)]
    for inputs in seeds:
        m, pp = gd_metrics(**inputs), per_prompt(**inputs)
        assert set(pp) == {"error_reduction", "sign_agreement", "mean_err_embed", "mean_err_final"}
        for name, (num, den) in pp.items():
            assert num.shape == (7,) and (den is None or den.shape == (7,))
            assert _ratio(num, den) == pytest.approx(m[name], rel=1e-12, abs=1e-12)
        assert pp["sign_agreement"][1][5] == 0  # the prompt that never moves counts nowhere
        assert pp["error_reduction"][1] is None and pp["sign_agreement"][1] is not None
    out = summarise(gd_metrics, seeds, PROMPT_AXES, scalars=SCALARS, n_boot=0, per_prompt=per_prompt)
    for name, v in out["per_prompt"].items():
        assert len(v["num"]) == 3 and all(len(row) == 7 for row in v["num"])
        per_seed = [_ratio(n, None if v["den"] is None else v["den"][s]) for s, n in enumerate(v["num"])]
        np.testing.assert_allclose(per_seed, out["per_seed"][name], rtol=1e-12, atol=1e-12)
        assert np.mean(per_seed) == pytest.approx(out["scalars"][name], rel=1e-12, abs=1e-12)


def test_per_prompt_sign_agreement_skips_zero_moves():
    y_star = np.array([2.0, 1.0])
    y_hat = np.array([[0.0, 1.0], [3.0, 1.0], [3.0, 1.0], [4.0, 1.0]])  # prompt 0: dy = 3, 0, 1; prompt 1 never moves
    num, den = per_prompt(y_hat, y_star, np.zeros((2, 2)))["sign_agreement"]
    np.testing.assert_array_equal(num, [1.0, 0.0])  # l=0 agrees, l=1 skipped, l=2 disagrees
    np.testing.assert_array_equal(den, [2.0, 0.0])
    assert num.sum() / den.sum() == gd_metrics(y_hat, y_star, np.zeros((2, 2)))["sign_agreement"] == 0.5
    y_flat = np.tile(y_hat[:1], (4, 1))  # no layer moves anywhere: 0 / 0, as the metric's NaN
    num, den = per_prompt(y_flat, y_star, np.zeros((2, 2)))["sign_agreement"]
    assert den.sum() == 0 and np.isnan(gd_metrics(y_flat, y_star, np.zeros((2, 2)))["sign_agreement"])


def _edge_case_inputs(rng, n_l=4, n_p=12, k=5):
    """Random readouts plus the cases that take the NaN branches: a prompt solved exactly at
    every layer (abs r below the log floor), prompts the layers never move, and equal x."""
    y_star = rng.integers(0, 10, size=n_p).astype(float)
    y_hat = y_star + rng.normal(0, 2, size=(n_l, n_p)) * np.linspace(1, 0.3, n_l)[:, None]
    y_hat[:, 0] = y_star[0]            # exact at every layer
    y_hat[:, 1] = y_hat[0, 1]          # never moves
    y_hat[1:3, 2] = y_hat[0, 2]        # moves only at the last layer
    x_ctx = rng.integers(0, 5, size=(n_p, k)).astype(float)
    x_ctx[3] = 2.0
    return {"y_hat": y_hat, "y_star": y_star, "x_ctx": x_ctx}


def test_the_batched_metric_equals_one_call_per_resample():
    """gd_metrics over B resamples at once (the bootstrap's path) gives, per resample, what a
    call on that resample alone gives, NaN where that gives NaN; including resamples made only
    of prompts with no spread (every fit undefined)."""
    rng = np.random.default_rng(3)
    inputs = _edge_case_inputs(rng)
    idx = rng.integers(0, 12, size=(40, 12))
    idx[0] = 0  # only the exactly solved prompt: no spread anywhere
    idx[1] = 1  # only the prompt that never moves
    idx[2, :6], idx[2, 6:] = 0, 1
    batched = gd_metrics(y_hat=np.moveaxis(inputs["y_hat"][:, idx], 1, 0), y_star=inputs["y_star"][idx],
                         x_ctx=inputs["x_ctx"][idx])
    for b, i in enumerate(idx):
        one = gd_metrics(y_hat=inputs["y_hat"][:, i], y_star=inputs["y_star"][i], x_ctx=inputs["x_ctx"][i])
        for name in SCALARS:
            assert batched[name].shape == (len(idx),)
            assert batched[name][b] == pytest.approx(one[name], rel=1e-9, abs=1e-12, nan_ok=True), (b, name)
        np.testing.assert_allclose(batched["mean_err"][b], one["mean_err"], rtol=1e-12)
    assert np.isnan(batched["slope_alpha"][0]) and np.isnan(batched["depth_rho"][1])
    assert np.isfinite(batched["slope_alpha"][3:]).all()


def test_the_batched_bootstrap_gives_the_same_intervals_as_the_loop(monkeypatch):
    """summarise with batched=True (chunks of resamples) and batched=False (one call each) draw
    the same resamples and report the same intervals."""
    from icl_probe.probes import common

    monkeypatch.setattr(common, "BATCH_BYTES", 20_000)  # several chunks of resamples (last one short)
    rng = np.random.default_rng(4)
    seeds = [_edge_case_inputs(rng) for _ in range(2)]
    kw = dict(scalars=SCALARS, per_layer=("mean_err",), n_boot=150, rng_seed=7)
    looped = summarise(gd_metrics, seeds, PROMPT_AXES, **kw)
    fast = summarise(gd_metrics, seeds, PROMPT_AXES, batched=True, **kw)
    for name in SCALARS:
        assert fast["scalars"][f"{name}_ci"] == pytest.approx(looped["scalars"][f"{name}_ci"], rel=1e-9, abs=1e-12)
        assert fast["scalars"][name] == looped["scalars"][name]
