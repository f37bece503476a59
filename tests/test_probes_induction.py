"""Induction: every row of the spec's table on hand-computed examples."""

import numpy as np
import pytest

from icl_probe.probes.common import summarise
from icl_probe.probes.induction import (
    PROMPT_AXES, SCALARS, first_block_positions, induction_metrics, per_prompt, prefix_positions, query_positions,
    surprisal_curve,
)


def test_positions():
    m = 4
    seq = ["a", "b", "c", "d", "a", "b", "c", "d"]
    q = query_positions(m)
    assert q.tolist() == [4, 5, 6]
    # the token after the earlier occurrence of x_t is the target x_{t+1}
    assert [seq[s] for s in prefix_positions(m)] == [seq[t + 1] for t in q]
    assert first_block_positions(m).tolist() == [0, 1, 2]


def test_surprisal_curve_by_hand():
    e = np.array([4.0, 5.0, 2.0, 1.0, 1.5])
    out = surprisal_curve(e)
    assert out["total_contraction"] == pytest.approx(0.25)
    assert out["monotone_improve_frac"] == 0.5  # 5->2 and 2->1 fall, 4->5 and 1->1.5 do not
    slope = np.polyfit([1, 2, 3], np.log([5.0, 2.0, 1.0]), 1)[0]
    assert out["rho2_per_layer"] == pytest.approx(np.exp(2 * slope))
    assert out["geometric_fit_r2"] == pytest.approx(np.corrcoef([1, 2, 3], np.log([5.0, 2.0, 1.0]))[0, 1] ** 2)


def test_geometric_decay_is_recovered():
    e = 6.0 * 0.7 ** np.arange(6)
    out = surprisal_curve(e)
    assert out["rho2_per_layer"] == pytest.approx(0.49)
    assert out["geometric_fit_r2"] == pytest.approx(1.0)
    assert out["monotone_improve_frac"] == 1.0


@pytest.mark.parametrize("e", [[5.0, 3.0], [3.0, 4.0, 2.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
def test_null_rule(e):
    out = surprisal_curve(np.array(e))
    assert out["rho2_per_layer"] is None and out["geometric_fit_r2"] is None


def test_flat_surprisal():
    out = surprisal_curve(np.full(4, 3.0))
    assert out["total_contraction"] == 1.0 and out["monotone_improve_frac"] == 0.0


def test_induction_metrics_by_hand():
    surprisal = np.array([[4.0, 6.0], [2.0, 4.0], [1.0, 1.0]])  # [L+1=3, S=2]
    final_logp = np.array([-1.0, -1.0])
    final_correct = np.array([0.5, 1.0])
    loss_first = np.array([5.0, 7.0])
    prefix = np.array([[[0.2, 0.4], [0.0, 1.0]], [[0.5, 0.5], [0.9, 0.7]]])  # [L=2, H=2, S=2]
    m = induction_metrics(surprisal, final_logp, final_correct, loss_first, prefix)
    np.testing.assert_allclose(m["surprisal"], [5.0, 3.0, 1.0])
    assert m["total_contraction"] == pytest.approx(0.2)
    slope = np.polyfit([0, 1, 2], np.log([5.0, 3.0, 1.0]), 1)[0]  # argmax 0, argmin 2: fit 3 layers
    assert m["rho2_per_layer"] == pytest.approx(np.exp(2 * slope))
    assert m["induction_acc"] == 0.75 and m["induction_logp"] == -1.0
    assert m["icl_score"] == pytest.approx(6.0 - 1.0)
    np.testing.assert_allclose(m["prefix_matching"], [[0.3, 0.5], [0.5, 0.8]])
    assert m["monotone_improve_frac"] == 1.0


def test_per_prompt_means_give_the_scalars():
    rng = np.random.default_rng(5)
    seeds = [{"surprisal": rng.uniform(0.5, 6, size=(4, 9)), "final_logp": -rng.uniform(0, 5, size=9),
              "final_correct": rng.integers(0, 5, size=9) / 4, "loss_first": rng.uniform(1, 6, size=9),
              "prefix": rng.uniform(0, 1, size=(3, 2, 9))} for _ in range(3)]
    for inputs in seeds:
        m, pp = induction_metrics(**inputs), per_prompt(**inputs)
        assert set(pp) == {"induction_acc", "induction_logp"}
        for name, (num, den) in pp.items():
            assert den is None and num.shape == (9,)
            assert num.mean() == pytest.approx(m[name], rel=1e-12, abs=1e-12)
    out = summarise(induction_metrics, seeds, PROMPT_AXES, scalars=SCALARS, n_boot=0, per_prompt=per_prompt)
    for name, v in out["per_prompt"].items():
        assert v["den"] is None
        per_seed = [np.mean(n) for n in v["num"]]
        np.testing.assert_allclose(per_seed, out["per_seed"][name], rtol=1e-12)
        assert np.mean(per_seed) == pytest.approx(out["scalars"][name], rel=1e-12)


@pytest.mark.parametrize("with_prefix", [True, False])
def test_the_batched_metric_equals_one_call_per_resample_and_the_same_intervals(with_prefix):
    """induction_metrics over B resamples at once equals one call per resample (NaN where that
    gives None: curves that do not fall, or fall straight from layer 0); summarise batched and
    looped report the same intervals."""
    rng = np.random.default_rng(5)
    n_l, n_s = 4, 10
    surprisal = np.array([6.0, 4.0, 2.0, 1.0])[:, None] + rng.uniform(0, 0.3, size=(n_l, n_s))  # falling
    surprisal[:, :4] = np.array([1.0, 2.0, 3.0, 4.0])[:, None]  # rising: where they dominate, no fit
    inputs = {"surprisal": surprisal, "final_logp": -rng.uniform(0.1, 3, n_s),
              "final_correct": (rng.uniform(size=n_s) > 0.5).astype(float),
              "loss_first": rng.uniform(3, 6, n_s),
              "prefix": rng.uniform(size=(n_l - 1, 2, n_s)) if with_prefix else None}
    idx = rng.integers(0, n_s, size=(60, n_s))
    idx[0] = 0  # only rising curves
    batched = induction_metrics(**{k: None if v is None else np.moveaxis(np.take(v, idx, axis=PROMPT_AXES[k]),
                                                                         PROMPT_AXES[k], 0)
                                   for k, v in inputs.items()})
    n_fitted = 0
    for b, i in enumerate(idx):
        one = induction_metrics(**{k: None if v is None else np.take(v, i, axis=PROMPT_AXES[k])
                                   for k, v in inputs.items()})
        n_fitted += one["rho2_per_layer"] is not None
        for name in SCALARS:
            want = np.nan if one[name] is None else one[name]
            assert batched[name][b] == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True), (b, name)
    assert np.isnan(batched["rho2_per_layer"][0]) and 0 < n_fitted < len(idx)
    seeds = [inputs, {**inputs, "surprisal": inputs["surprisal"][::-1].copy()}]
    kw = dict(scalars=SCALARS, per_layer=("surprisal",), n_boot=120, rng_seed=3)
    looped = summarise(induction_metrics, seeds, PROMPT_AXES, **kw)
    fast = summarise(induction_metrics, seeds, PROMPT_AXES, batched=True, **kw)
    for name in SCALARS:
        assert fast["scalars"][f"{name}_ci"] == pytest.approx(looped["scalars"][f"{name}_ci"], rel=1e-9, abs=1e-12)
