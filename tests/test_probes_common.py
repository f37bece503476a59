import numpy as np
import pytest
from scipy import stats

from icl_probe.probes.common import ols, rankdata, rankdata_rows, spearman, summarise


def test_ols_against_polyfit():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    slope, intercept, r, r2 = ols(x, y)
    np.testing.assert_allclose([slope, intercept], np.polyfit(x, y, 1))
    assert r == pytest.approx(stats.pearsonr(x, y).statistic) and r2 == pytest.approx(r * r)
    assert all(np.isnan(ols(np.ones(4), y[:4])))
    assert np.isnan(ols(x[:4], np.ones(4))[2])


def test_rank_and_spearman_against_scipy():
    a = np.array([3.0, 1.0, 3.0, 2.0, 2.0, 2.0, 7.0])
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, 40), rng.normal(size=40)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_row_ranks_equal_scipys_on_every_row_with_ties():
    rng = np.random.default_rng(2)
    for a in (rng.integers(0, 4, size=(30, 17)).astype(float), rng.normal(size=(2, 3, 50)),
              np.zeros((4, 6)), np.array([5.0])):
        np.testing.assert_array_equal(rankdata_rows(a), stats.rankdata(a, axis=-1))


def _mean_metric(v, w):
    return {"m": float(np.mean(v)), "w_fixed": float(w.sum()), "curve": np.array([np.mean(v), 1.0])}


def test_summarise_seeds_and_bootstrap():
    inputs = [{"v": np.array([1.0, 2.0, 3.0]), "w": np.array([1.0])},
              {"v": np.array([3.0, 5.0, 7.0]), "w": np.array([2.0])}]
    out = summarise(_mean_metric, inputs, {"v": 0, "w": None}, scalars=["m", "w_fixed"], per_layer=["curve"],
                    n_boot=200, rng_seed=0)
    s = out["scalars"]
    assert out["per_seed"]["m"] == [2.0, 5.0]
    assert s["m"] == 3.5 and s["m_std"] == pytest.approx(1.5)  # population std
    lo, hi = s["m_ci"]
    assert 2.0 <= lo <= 3.5 <= hi <= 6.0
    assert s["w_fixed_ci"] == [1.5, 1.5]  # not resampled
    assert out["per_layer"]["curve"] == [3.5, 1.0]
    again = summarise(_mean_metric, inputs, {"v": 0, "w": None}, scalars=["m", "w_fixed"], n_boot=200, rng_seed=0)
    assert again["scalars"] == s  # deterministic


def test_summarise_null_values():
    def metric(v):
        return {"x": None if v[0] < 0 else float(v.mean())}

    out = summarise(metric, [{"v": np.array([-1.0])}, {"v": np.array([2.0])}], {"v": 0}, scalars=["x"], n_boot=10)
    assert out["per_seed"]["x"][0] != out["per_seed"]["x"][0]  # NaN
    assert out["scalars"]["x"] == 2.0 and out["scalars"]["x_std"] == 0.0
    out = summarise(metric, [{"v": np.array([-1.0])}], {"v": 0}, scalars=["x"], n_boot=10)
    assert out["scalars"]["x"] is None and out["scalars"]["x_ci"] == [None, None]


def test_summarise_rejects_ragged_prompt_axes():
    with pytest.raises(ValueError, match="number of prompts"):
        summarise(lambda a, b: {"x": 0.0}, [{"a": np.zeros(3), "b": np.zeros(4)}], {"a": 0, "b": 0},
                  scalars=["x"], n_boot=2)


def _ratio_metric(v, w):
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"q": float(v.sum() / w.sum())}


def _ratio_per_prompt(v, w):
    return {"q": (v, w), "v_mean": (v, None)}


def test_summarise_per_prompt_values_round_trip(tmp_path):
    from icl_probe.io import read_json, write_json

    inputs = [{"v": np.array([1.0, 2.0, np.nan]), "w": np.array([1.0, 1.0, 2.0])},  # a non-finite value
              {"v": np.array([0.0, 0.0, 0.0]), "w": np.array([0.0, 0.0, 0.0])},  # 0 / 0: a NaN seed
              {"v": np.array([3.0, 1.0, 2.0]), "w": np.array([2.0, 4.0, 2.0])}]
    out = summarise(_ratio_metric, inputs, {"v": 0, "w": 0}, scalars=["q"], n_boot=5, per_prompt=_ratio_per_prompt)
    assert "per_prompt" not in summarise(_ratio_metric, inputs, {"v": 0, "w": 0}, scalars=["q"], n_boot=0)
    pp = read_json(write_json(tmp_path / "r.json", out))["per_prompt"]
    assert pp["q"]["num"][0] == [1.0, 2.0, None] and pp["q"]["den"][2] == [2.0, 4.0, 2.0]
    assert pp["v_mean"]["den"] is None and len(pp["v_mean"]["num"]) == 3
    num = [np.asarray(row, dtype=np.float64) for row in pp["q"]["num"]]  # null -> NaN
    den = [np.asarray(row, dtype=np.float64) for row in pp["q"]["den"]]
    with np.errstate(invalid="ignore"):
        per_seed = np.array([n.sum() / d.sum() for n, d in zip(num, den)])
    assert np.isnan(per_seed[:2]).all() and per_seed[2] == 0.75
    assert out["scalars"]["q"] == float(np.nanmean(per_seed)) == 0.75  # NaN seeds left out, as summarise does


def _sinks_inputs(rng):
    return {"alpha": rng.uniform(0, 1, size=(6, 4, 23))}  # [L, H, S]: 6 layers, ceil(6/3) = 2 per end


def _recall_inputs(rng):
    return {"logp": -rng.exponential(size=31), "correct": rng.uniform(size=31) < 0.4}


@pytest.mark.parametrize("name, make", [("attention_sinks", _sinks_inputs), ("associative_recall", _recall_inputs)])
def test_batched_sink_and_recall_metrics_equal_one_call_per_resample(monkeypatch, name, make):
    """attention_sinks and associative_recall take a leading resample axis (Probe.batched): the
    bootstrap in chunks gives the same point values and intervals as one call per resample."""
    from icl_probe.probes import common
    from icl_probe.probes.registry import get

    probe = get(name)
    assert probe.batched
    monkeypatch.setattr(common, "BATCH_BYTES", 10_000)  # several chunks, the last one short
    rng = np.random.default_rng(11)
    seeds = [make(rng) for _ in range(3)]
    fixed = {"eps": 0.5} if name == "attention_sinks" else {}
    kw = dict(scalars=probe.scalars, per_layer=probe.per_layer, n_boot=120, rng_seed=3, fixed=fixed)
    looped = summarise(probe.metric, seeds, probe.prompt_axes, **kw)
    fast = summarise(probe.metric, seeds, probe.prompt_axes, batched=True, **kw)
    for s in probe.scalars:
        assert fast["scalars"][s] == looped["scalars"][s]
        assert fast["scalars"][f"{s}_ci"] == pytest.approx(looped["scalars"][f"{s}_ci"], rel=1e-12, abs=1e-14)
        assert fast["scalars"][f"{s}_ci"][0] < fast["scalars"][f"{s}_ci"][1]  # a real interval, not a point
    # the batched metric, called directly on stacked resamples, is the per-resample metric
    one = probe.metric(**seeds[0], **fixed)
    stacked = probe.metric(**{k: np.stack([v, v]) for k, v in seeds[0].items()}, **fixed)
    for s in probe.scalars:
        assert stacked[s].shape == (2,) and stacked[s][1] == pytest.approx(one[s], rel=1e-12)
