"""Emergence statistics on constructed trajectories with hand-computed answers."""

import math

import numpy as np
import pytest

from icl_probe.stats import emergence
from icl_probe.stats.axis import left_edge, log_step, step_from_log
from icl_probe.stats.synthetic import PYTHIA_STEPS, three_phase_er

STEPS = [0, 10, 100, 1000, 10000]
ER = [0.0, -0.5, -1.0, 0.5, 2.0]  # valley at 100, crossing in (100, 1000), peak 2.0 at 10000


def test_axis_puts_step0_one_decade_left():
    assert left_edge([0, 1000, 2000]) == 100.0
    assert log_step([0, 1, 10]).tolist() == [-1.0, 0.0, 1.0]
    assert step_from_log(-1.0, 0.1) == 0.0
    assert step_from_log(2.0, 0.1) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        log_step([-1, 2])


def test_peak_first_attaining_checkpoint():
    pk = emergence.peak([0, 1, 2, 3], [0.0, 2.0, 1.0, 2.0])
    assert pk == {"peak_er": 2.0, "peak_step": 1.0, "peak_index": 1}


def test_zero_crossing_bracket_and_log_interpolation():
    zc = emergence.zero_crossing(STEPS, ER)
    assert zc["bracket"] == [100.0, 1000.0]
    # ER goes -1.0 -> 0.5 over log10 step 2 -> 3: zero at 2 + 1/1.5
    assert zc["interpolated"] == pytest.approx(10 ** (2 + 1 / 1.5))


def test_zero_crossing_of_the_synthetic_three_phase_curve():
    zc = emergence.zero_crossing(PYTHIA_STEPS, three_phase_er(PYTHIA_STEPS))
    assert zc["bracket"] == [1000.0, 2000.0]
    assert zc["interpolated"] == pytest.approx(10 ** (3 + math.log10(2) * 0.3 / 0.8))


def test_zero_crossing_only_after_the_minimum():
    # an early crossing (10 -> 100) comes before the minimum (at 1000): not reported
    zc = emergence.zero_crossing([1, 10, 100, 1000, 10000], [0.0, -0.2, 0.3, -1.0, 1.0])
    assert zc["bracket"] == [1000.0, 10000.0]
    assert zc["interpolated"] == pytest.approx(10 ** 3.5)


def test_zero_crossing_needs_a_negative_minimum_and_a_recovery():
    assert emergence.zero_crossing([0, 1, 2], [0.0, 0.5, 1.0])["bracket"] is None
    assert emergence.zero_crossing([0, 1, 2], [0.0, -0.5, -1.0])["bracket"] is None


def test_zero_crossing_from_step0_reports_the_bracket_and_no_interpolated_value():
    zc = emergence.zero_crossing([0, 1, 10], [-1.0, 1.0, 2.0])
    assert zc["bracket"] == [0.0, 1.0]
    assert zc["interpolated"] is None and "step 0" in zc["note"]


def test_half_max_step_first_and_interpolated():
    hm = emergence.half_max_step(STEPS, ER)
    assert hm["level"] == 1.0
    assert hm["first"] == 10000.0
    # ER 0.5 at 1000 -> 2.0 at 10000: reaches 1.0 a third of the way in log10 step
    assert hm["interpolated"] == pytest.approx(10 ** (3 + 1 / 3))


def test_half_max_step_at_the_first_checkpoint_bracket_from_step0_and_undefined_peak():
    hm = emergence.half_max_step([0, 5], [2.0, 1.0])
    assert hm["first"] == 0.0 and hm["interpolated"] is None and hm["bracket"] is None and hm["level"] == 1.0
    hm = emergence.half_max_step([0, 5, 50], [0.0, 2.0, 1.5])
    assert hm["first"] == 5.0 and hm["bracket"] == [0.0, 5.0] and hm["interpolated"] is None
    assert emergence.half_max_step([0, 5], [-1.0, -0.5])["first"] is None


def test_phases_three_phase():
    ph = emergence.phases(STEPS, ER, er_std=[0.02] * 5, tau_min=0.1)
    assert ph["tau"] == 0.1
    assert ph["plateau_n"] == 1 and ph["plateau_end_step"] == 0.0
    assert ph["valley"] and ph["valley_step"] == 100.0 and ph["valley_er"] == -1.0
    assert ph["transition"]
    assert ph["label"] == "three-phase"


def test_phases_tau_from_the_median_std():
    assert emergence.phase_tau([0.1, 0.2, 0.3], tau_min=0.1) == pytest.approx(0.4)
    assert emergence.phase_tau([np.nan], tau_min=0.1) == 0.1
    # the rise must clear tau = 2 x median std: 0.35 does not clear 0.4
    ph = emergence.phases([0, 10, 100, 1000], [0.0, 0.1, 0.3, 0.35], er_std=[0.2] * 4, tau_min=0.1)
    assert ph["tau"] == pytest.approx(0.4) and ph["label"] == "no emergence"


def _ci(er, half):
    er, half = np.asarray(er, dtype=float), np.broadcast_to(np.asarray(half, dtype=float), len(er))
    return er - half, er + half


def test_a_tiny_dip_is_no_valley_however_small_its_spread():
    steps, er = [0, 10, 100, 1000, 10000], [0.0, -0.03, -0.02, 1.0, 2.0]
    ph = emergence.phases(steps, er, tau_min=0.1, er_ci=_ci(er, 0.001))
    assert not ph["valley"] and ph["label"] == "emergence without valley"


def test_a_real_dip_is_a_valley_even_when_another_checkpoint_of_it_is_noisy():
    steps = [0, 10, 100, 1000, 10000, 100000]
    er = [0.0, -0.38, -0.25, 0.8, 2.0, 1.8]
    half = [0.05, 0.9, 0.01, 0.05, 0.05, 0.05]  # the deepest point is noisy, -0.25 +- 0.01 is not
    ph = emergence.phases(steps, er, tau_min=0.1, er_ci=_ci(er, half))
    assert ph["valley"] and ph["valley_er"] == -0.38 and ph["label"] == "three-phase"
    # the same dip with every checkpoint's interval reaching above 0 is not a valley
    ph = emergence.phases(steps, er, tau_min=0.1, er_ci=_ci(er, [0.05, 0.9, 0.3, 0.05, 0.05, 0.05]))
    assert not ph["valley"] and ph["label"] == "emergence without valley"
    assert "not a valley" in ph["note"]


def test_a_rise_whose_intervals_do_not_clear_tau_is_no_emergence():
    steps, er = [0, 10, 100, 1000], [0.0, 0.05, 0.15, 0.12]
    assert emergence.phases(steps, er, tau_min=0.1)["label"] == "emergence without valley"
    ph = emergence.phases(steps, er, tau_min=0.1, er_ci=_ci(er, 0.1))
    assert ph["label"] == "no emergence" and not ph["emerging"]


def test_phases_emergence_without_valley():
    steps, er = [0, 10, 100, 1000, 10000], [0.0, 0.05, 0.5, 1.0, 1.2]
    ph = emergence.phases(steps, er, tau_min=0.1)
    assert ph["label"] == "emergence without valley"
    assert ph["plateau_n"] == 2 and not ph["valley"] and not ph["transition"]
    assert emergence.zero_crossing(steps, er)["bracket"] is None


def test_phases_no_emergence():
    assert emergence.phases([0, 1, 2, 3], [0.0, 0.02, -0.03, 0.05], tau_min=0.1)["label"] == "no emergence"
    # a valley that never recovers
    assert emergence.phases([0, 1, 2, 3], [0.0, 0.5, -1.0, -0.8], tau_min=0.1)["label"] == "no emergence"


def test_unordered_steps_are_an_error():
    with pytest.raises(ValueError, match="ordered"):
        emergence.peak([10, 1], [0.0, 1.0])
