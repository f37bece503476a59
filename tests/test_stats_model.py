"""Per-model statistics across checkpoints on constructed trajectories with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from icl_probe.stats.model import bootstrapped, model_statistics, tokens_at
from icl_probe.stats.synthetic import PYTHIA_STEPS, default_curves, simulate_model, three_phase_er

NAN = float("nan")


def synthetic_table(std=0.02, steps=PYTHIA_STEPS):
    c = default_curves(steps)
    t = pd.DataFrame({"step": steps, "revision": [f"step{s}" for s in steps],
                      "tokens": np.asarray(steps, dtype=float) * 2_097_152})
    for k, v in c.items():
        t[k], t[k + "_std"] = v, std
    return t


def test_model_statistics_on_the_synthetic_model():
    st = model_statistics(synthetic_table(), {"bootstrap": 300})
    s = st["statistics"]
    assert s["peak_er"] == 2.0 and s["peak_step"] == 16000.0 and s["peak_tokens"] == 16000 * 2_097_152
    assert s["zero_crossing_lo"] == 1000.0 and s["zero_crossing_hi"] == 2000.0
    assert s["zero_crossing_interp"] == pytest.approx(10 ** (3 + math.log10(2) * 0.3 / 0.8))
    assert s["zero_crossing_lo_tokens"] == 1000 * 2_097_152
    assert s["phases"]["label"] == "three-phase"
    assert s["er_decay"] == pytest.approx(1.4 / 2.0 - 1)
    assert s["lifecycle"] == "magnitude attenuates, direction preserved"
    assert set(s["heldout_change"]) == {"induction_acc", "ar_acc", "ar_logp"}
    assert s["co_emergence_lag"] == pytest.approx(
        np.log10(s["sinks"]["half_rise"]["interpolated"]) - np.log10(s["zero_crossing_interp"]))
    iv = st["intervals"]
    lo, hi = iv["zero_crossing_interp"]["ci"]
    assert 1000 <= lo <= s["zero_crossing_interp"] <= hi <= 2000
    assert iv["peak_er"]["ci"][0] <= 2.0 <= iv["peak_er"]["ci"][1]
    assert st["skipped"] == {} and st["null"] == {}


def test_half_max_step_is_the_first_checkpoint_and_interp_the_interpolated_one():
    s = model_statistics(synthetic_table(), {"bootstrap": 0})["statistics"]
    # ER 2.0 peak -> level 1.0; ER 0.5 at 2000, 1.2 at 4000: first checkpoint at or above is 4000
    assert s["half_max_step"] == 4000.0 and s["half_max_bracket"] == [2000.0, 4000.0]
    assert s["half_max_step_interp"] == pytest.approx(10 ** (math.log10(2000) + math.log10(2) * 0.5 / 0.7))
    # Pythia: tokens = step x 2,097,152, so interpolating tokens in log10 gives the same point
    assert s["half_max_tokens_interp"] == pytest.approx(s["half_max_step_interp"] * 2_097_152)


def test_held_out_columns_at_2_of_12_checkpoints_keep_the_statistics():
    steps = [0, 16, 64, 256, 512, 1000, 2000, 4000, 8000, 16000, 64000, 143000]
    t = synthetic_table(steps=steps)
    measured = t["step"].isin([4000, 143000])
    for col in ("induction_acc", "ar_acc", "ar_logp"):
        t.loc[~measured, [col, col + "_std"]] = NAN
    st = model_statistics(t, {"bootstrap": 200})
    s = st["statistics"]
    assert s["phases"]["label"] == "three-phase"
    assert s["lifecycle"] == "magnitude attenuates, direction preserved"
    assert s["half_max_step"] == 4000.0 and s["zero_crossing_interp"] is not None
    hc = s["heldout_change"]["induction_acc"]
    # the ER peak is at 16000; measured are 4000 (0.60 decades away) and the final 143000
    assert s["peak_step"] == 16000.0
    assert (hc["at_peak_step"], hc["final_step"]) == (4000.0, 143000.0)
    want = t.set_index("step")["induction_acc"]
    assert hc["change"] == pytest.approx(want[143000] - want[4000])
    assert st["checkpoints"]["induction_acc"] == {"n": 2, "steps_missing": [s_ for s_ in steps
                                                                          if s_ not in (4000, 143000)]}
    # measured at 1000 and 143000: the final one is the nearest to the peak, so no change can be told
    t2 = synthetic_table(steps=steps)
    t2.loc[~t2["step"].isin([1000, 143000]), "induction_acc"] = NAN
    hc2 = model_statistics(t2, {"bootstrap": 0})["statistics"]["heldout_change"]["induction_acc"]
    assert hc2["change"] is None and "two measured" in hc2["note"]


def test_held_out_change_from_the_measured_checkpoint_nearest_the_peak():
    steps = [0, 16, 64, 256, 512, 1000, 2000, 4000, 8000, 16000, 64000, 143000]
    t = synthetic_table(steps=steps)
    keep = t["step"].isin([8000, 143000])
    t.loc[~keep, ["induction_acc", "induction_acc_std"]] = NAN
    hc = model_statistics(t, {"bootstrap": 0})["statistics"]["heldout_change"]["induction_acc"]
    want = t.set_index("step")["induction_acc"]
    assert hc["at_peak_step"] == 8000.0 and hc["at_peak_revision"] == "step8000"
    assert hc["change"] == pytest.approx(want[143000] - want[8000])


def test_pure_noise_is_no_emergence_and_its_emergence_statistics_are_null():
    steps = list(PYTHIA_STEPS)
    truth = {"error_reduction": np.zeros(len(steps)), "sign_agreement": np.full(len(steps), 0.5),
             "late_early_ratio": default_curves(steps)["late_early_ratio"]}
    for seed in range(5):
        table, samples = simulate_model(steps, truth, np.random.default_rng(seed))
        st = model_statistics(table, {"bootstrap": 200}, samples)
        s = st["statistics"]
        assert s["phases"]["label"] == "no emergence"
        for key in ("half_max_step", "half_max_step_interp", "zero_crossing_lo", "zero_crossing_interp",
                    "er_decay", "sa_decay", "lifecycle", "co_emergence_lag", "heldout_change"):
            assert s.get(key) is None, key
        for key in ("half_max_step", "zero_crossing_interp", "lifecycle", "co_emergence_lag"):
            assert "no emergence" in st["null"][key]
        assert st["intervals"]["zero_crossing_interp"]["ci"] is None if "zero_crossing_interp" in \
            st["intervals"] else True
        assert s["peak_er"] is not None  # descriptive: how large the noise got


def test_emergence_without_valley_has_no_zero_crossing():
    steps = [0, 10, 100, 1000, 10000]
    t = pd.DataFrame({"step": steps, "error_reduction": [0.0, -0.03, 0.5, 1.0, 1.2],
                      "error_reduction_std": 0.01})
    st = model_statistics(t, {"bootstrap": 200})
    s = st["statistics"]
    assert s["phases"]["label"] == "emergence without valley"
    assert s["zero_crossing_lo"] is None and s["zero_crossing_interp"] is None
    assert "no valley" in st["null"]["zero_crossing_interp"]
    assert s["half_max_step"] == 1000.0  # peak 1.2, level 0.6


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_checkpoints_give_no_statistics(n):
    st = model_statistics(synthetic_table().iloc[:n], {"bootstrap": 50})
    assert st["statistics"] == {} and "at least 3" in st["null"]["all"]


def test_a_column_measured_at_two_checkpoints_is_no_trajectory():
    t = synthetic_table()
    t.loc[t["step"] < 64000, ["error_reduction", "error_reduction_std"]] = NAN
    st = model_statistics(t, {"bootstrap": 0})
    assert "peak_er" not in st["statistics"] and "measured at 2 checkpoint(s)" in st["skipped"]["emergence"]
    assert st["statistics"]["sa_decay"] is not None


def test_swapped_rows_with_equal_steps_give_the_same_result():
    t = synthetic_table(steps=[0, 100, 1000, 1000, 10000, 100000])
    t.loc[3, "revision"] = "stage1-step1000-tokens5B"
    t.loc[3, "error_reduction"] = 0.7
    a = model_statistics(t, {"bootstrap": 100})
    b = model_statistics(t.iloc[::-1], {"bootstrap": 100})
    c = model_statistics(t.iloc[[0, 1, 3, 2, 4, 5]], {"bootstrap": 100})
    assert a == b == c
    assert a["duplicate_steps"] == [{"step": 1000.0, "kept": "stage1-step1000-tokens5B", "dropped": ["step1000"]}]
    # the same revision name twice (a table without revisions): still independent of order
    u = t.drop(columns="revision")
    assert model_statistics(u, {"bootstrap": 100}) == model_statistics(u.iloc[::-1], {"bootstrap": 100})


def test_main_alias_row_is_not_a_second_final_checkpoint():
    t = synthetic_table()
    main = t.iloc[[-1]].assign(revision="main")
    st = model_statistics(pd.concat([t, main]), {"bootstrap": 0})
    assert st["n_checkpoints"] == len(PYTHIA_STEPS) and st["duplicate_steps"] == []


def test_crossing_from_step_zero_reports_the_bracket_only():
    t = pd.DataFrame({"step": [0, 1000, 2000, 4000], "error_reduction": [-0.5, 0.5, 1.5, 2.0],
                      "error_reduction_ci_lo": [-0.6, 0.4, 1.4, 1.9], "error_reduction_ci_hi": [-0.4, 0.6, 1.6, 2.1]})
    st = model_statistics(t, {"bootstrap": 100})
    s = st["statistics"]
    assert s["phases"]["label"] == "three-phase"
    assert (s["zero_crossing_lo"], s["zero_crossing_hi"]) == (0.0, 1000.0)
    assert s["zero_crossing_interp"] is None and "step 0" in st["null"]["zero_crossing_interp"]


def test_missing_columns_skip_with_a_note():
    t = synthetic_table()[["step", "error_reduction"]]
    st = model_statistics(t, {"bootstrap": 0})
    assert st["statistics"]["phases"]["label"] == "three-phase"
    assert st["statistics"]["phases"]["evidence"].startswith("magnitude only")
    assert "sign_agreement" in st["skipped"]["sa_decay"]
    assert "late_early_ratio" in st["skipped"]["sinks"]
    assert "phases.tau_from_std" in st["skipped"]
    assert st["intervals"] == {}


def test_a_rounded_table_keeps_its_plateau_and_statistics():
    c = default_curves(PYTHIA_STEPS)
    t = pd.DataFrame({"step": PYTHIA_STEPS, "error_reduction": np.round(c["error_reduction"], 2),
                      "sign_agreement": np.round(c["sign_agreement"], 2)})
    s = model_statistics(t, {"bootstrap": 0})["statistics"]
    assert s["phases"]["label"] == "three-phase" and s["phases"]["plateau_n"] >= 5
    assert s["zero_crossing_lo"] == 1000.0


def test_tokens_between_checkpoints_interpolate_in_log10():
    assert tokens_at([0, 10, 100], [0, 1e9, 1e10], 10 ** 1.5) == pytest.approx(10 ** 9.5)
    assert tokens_at([0, 10, 100], [0, 1e9, 1e10], 10) == 1e9
    assert tokens_at([0, 10, 100], [0, 1e9, 1e10], 5) is None  # below the first positive step
    assert tokens_at([0, 10], None, 10) is None


def test_prompt_bootstrap_intervals_use_the_kept_prompts():
    truth = {k: default_curves(PYTHIA_STEPS)[k] for k in ("error_reduction", "sign_agreement", "late_early_ratio")}
    table, samples = simulate_model(PYTHIA_STEPS, truth, np.random.default_rng(7))
    st = model_statistics(table, {"bootstrap": 300}, samples)
    assert st["interval_sources"] == {k: "prompt bootstrap" for k in truth}
    true = bootstrapped(np.asarray(PYTHIA_STEPS, dtype=float), truth)
    lo, hi = st["intervals"]["zero_crossing_interp"]["ci"]
    assert lo < true["zero_crossing_interp"] < hi
    # the interval comes from resampling prompts, not from the table's spread columns
    no_spread = table.drop(columns=[c for c in table if c.endswith(("_std", "_ci_lo", "_ci_hi"))])
    st2 = model_statistics(no_spread, {"bootstrap": 300}, samples)
    assert st2["intervals"]["zero_crossing_interp"]["ci"] == pytest.approx([lo, hi])


def test_three_phase_curve_er_helper_is_the_known_shape():
    er = three_phase_er(PYTHIA_STEPS)
    assert er.min() == pytest.approx(-0.6) and er.max() == pytest.approx(2.0)
