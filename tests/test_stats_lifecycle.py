"""Life-cycle statistics: decays, labels, held-out change."""

import pytest

from icl_probe.stats import lifecycle


def test_er_decay_of_a_decaying_peak():
    assert lifecycle.er_decay([0.0, 1.0, 2.0, 1.5, 1.4]) == pytest.approx(-0.3)
    assert lifecycle.er_decay([0.0, -1.0]) is None  # no positive peak


def test_sa_decay():
    assert lifecycle.sa_decay([0.5, 0.9, 0.72]) == pytest.approx(-0.2)


@pytest.mark.parametrize("er_dec, sa_dec, label", [
    (-0.30, -0.02, "magnitude attenuates, direction preserved"),
    (-0.15, -0.10, "magnitude attenuates, direction preserved"),  # both thresholds inclusive
    (-0.05, 0.0, "stable"),
    (-0.30, -0.20, "direction decays"),
    (0.0, -0.11, "direction decays"),
    (None, -0.2, "direction decays"),
    (None, 0.0, None),
])
def test_lifecycle_label(er_dec, sa_dec, label):
    assert lifecycle.lifecycle_label(er_dec, sa_dec, -0.15, -0.10) == label


def test_lifecycle_thresholds_come_from_config():
    assert lifecycle.lifecycle_label(-0.2, 0.0, er_threshold=-0.25) == "stable"


def test_heldout_change_from_peak_to_final():
    ch = lifecycle.heldout_change([0, 10, 100], 10, {"ar_acc": [0.1, 0.6, 0.5], "induction_acc": [0.0, 0.5, 0.9]})
    assert ch["ar_acc"]["at_peak"] == 0.6 and ch["ar_acc"]["final"] == 0.5
    assert ch["ar_acc"]["change"] == pytest.approx(-0.1)
    assert ch["induction_acc"]["change"] == pytest.approx(0.4)
    assert "ar_logp" not in ch


def test_heldout_change_uses_the_measured_checkpoint_nearest_the_peak():
    nan = float("nan")
    steps = [0, 100, 1000, 2000, 4000, 8000, 16000, 143000]
    acc = [nan, 0.1, nan, nan, nan, 0.7, nan, 0.6]  # measured at 100, 8000 and the final step only
    ch = lifecycle.heldout_change(steps, 4000, {"induction_acc": acc}, [f"step{s}" for s in steps])
    rec = ch["induction_acc"]
    # 4000 is 0.30 decades from 8000 and 1.6 from 100: the nearest measured one is 8000
    assert rec["at_peak_step"] == 8000 and rec["at_peak_revision"] == "step8000" and rec["at_peak"] == 0.7
    assert rec["final_step"] == 143000 and rec["change"] == pytest.approx(-0.1)
    assert rec["n_measured"] == 3 and "nearest" in rec["note"]
    one = lifecycle.heldout_change(steps, 4000, {"ar_acc": [nan] * 7 + [0.5]})["ar_acc"]
    assert one["change"] is None and "two measured" in one["note"]
    # the peak at the final checkpoint: no change, by definition
    last = lifecycle.heldout_change(steps, 143000, {"ar_acc": [nan] * 7 + [0.5]})["ar_acc"]
    assert last["change"] == 0.0 and last["at_peak_step"] == last["final_step"] == 143000


@pytest.mark.parametrize("sa_ci, er_ci, label", [
    ([-0.20, -0.12], [-0.4, -0.2], "direction decays"),           # wholly below -0.10
    ([-0.14, -0.02], [-0.4, -0.2], "undetermined"),               # straddles -0.10
    ([-0.05, 0.0], [-0.4, -0.2], "magnitude attenuates, direction preserved"),
    ([-0.05, 0.0], [-0.1, 0.05], "stable"),
    ([-0.05, 0.0], [-0.3, 0.05], "undetermined"),                 # er_decay straddles -0.15
])
def test_lifecycle_label_takes_the_intervals_into_account(sa_ci, er_ci, label):
    point_sa, point_er = sum(sa_ci) / 2, sum(er_ci) / 2
    assert lifecycle.lifecycle_label(point_er, point_sa, -0.15, -0.10, er_ci=er_ci, sa_ci=sa_ci) == label
