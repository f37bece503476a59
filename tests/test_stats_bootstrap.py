"""Bootstrap intervals and the full per-model statistics."""

import numpy as np
import pandas as pd
import pytest

from icl_probe.stats.bootstrap import parametric_bootstrap
from icl_probe.stats.model import model_statistics
from icl_probe.stats.synthetic import PYTHIA_STEPS, default_curves


def test_no_spread_no_interval():
    out = parametric_bootstrap(lambda m: {"x": float(m["a"].max())}, {"a": np.array([1.0, 2.0])},
                               {"a": np.array([0.0, np.nan])})
    assert out == {"ci": {}, "defined_frac": {}}


def test_interval_brackets_the_mean_and_matches_the_normal_width():
    stat = lambda m: {"mean": float(m["a"].mean())}  # noqa: E731
    out = parametric_bootstrap(stat, {"a": np.full(4, 2.0)}, {"a": np.full(4, 0.6)},
                               n_boot=4000, seed=3, n_seeds=9)
    lo, hi = out["ci"]["mean"]
    # mean of 4 checkpoints, each Normal(2, 0.6 / 3): sd 0.1, 95 % half width ~0.196
    assert lo == pytest.approx(2 - 0.196, abs=0.02) and hi == pytest.approx(2 + 0.196, abs=0.02)
    again = parametric_bootstrap(stat, {"a": np.full(4, 2.0)}, {"a": np.full(4, 0.6)},
                                 n_boot=4000, seed=3, n_seeds=9)
    assert again == out


def synthetic_table(std=0.05):
    c = default_curves(PYTHIA_STEPS)
    t = pd.DataFrame({"step": PYTHIA_STEPS, "revision": [f"step{s}" for s in PYTHIA_STEPS]})
    for k, v in c.items():
        t[k], t[k + "_std"] = v, std
    return t


def test_model_statistics_on_the_synthetic_model():
    st = model_statistics(synthetic_table(), {"bootstrap": 300})
    s = st["statistics"]
    assert s["peak_er"] == 2.0 and s["peak_step"] == 16000.0
    assert s["zero_crossing"]["bracket"] == [1000.0, 2000.0]
    assert s["phases"]["label"] == "three-phase"
    assert s["er_decay"] == pytest.approx(1.4 / 2.0 - 1)
    assert s["lifecycle"] == "magnitude attenuates, direction preserved"
    assert set(s["heldout_change"]) == {"induction_acc", "ar_acc", "ar_logp"}
    assert s["co_emergence_lag"] == pytest.approx(
        np.log10(s["sinks"]["half_rise"]["interpolated"]) - np.log10(s["zero_crossing"]["interpolated"]))
    ci = st["bootstrap"]["ci"]
    lo, hi = ci["zero_crossing_step"]
    assert 1000 <= lo <= s["zero_crossing"]["interpolated"] <= hi <= 2000
    assert ci["peak_er"][0] <= 2.0 <= ci["peak_er"][1]
    assert st["skipped"] == {}


def test_main_alias_row_is_not_a_second_final_checkpoint():
    t = synthetic_table()
    main = t.iloc[[-1]].assign(revision="main")
    st = model_statistics(pd.concat([t, main]), {"bootstrap": 0})
    assert st["n_checkpoints"] == len(PYTHIA_STEPS)


def test_missing_columns_skip_with_a_note():
    t = synthetic_table()[["step", "error_reduction"]]
    st = model_statistics(t, {"bootstrap": 0})
    assert st["statistics"]["phases"]["label"] == "three-phase"
    assert "sign_agreement" in st["skipped"]["sa_decay"]
    assert "late_early_ratio" in st["skipped"]["sinks"]
    assert "phases.tau_from_std" in st["skipped"]
    assert st["bootstrap"]["ci"] == {}
