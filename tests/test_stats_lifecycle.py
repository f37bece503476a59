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
    ch = lifecycle.heldout_change(1, {"ar_acc": [0.1, 0.6, 0.5], "induction_acc": [0.0, 0.5, 0.9]})
    assert ch["ar_acc"]["at_peak"] == 0.6 and ch["ar_acc"]["final"] == 0.5
    assert ch["ar_acc"]["change"] == pytest.approx(-0.1)
    assert ch["induction_acc"]["change"] == pytest.approx(0.4)
    assert "ar_logp" not in ch
