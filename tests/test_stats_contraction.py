"""Rate agreement, contraction summary, sinks and co-emergence lag."""

import math

import numpy as np
import pytest

from icl_probe.stats import coemergence, contraction


def test_rate_agreement_perfect_and_rel_error():
    pred = np.array([1.1, 1.2, 1.3, 1.4])
    ra = contraction.rate_agreement(pred, pred / 1.1)
    assert ra["pearson"] == pytest.approx(1.0) and ra["spearman"] == pytest.approx(1.0)
    assert ra["median_rate_rel_error"] == pytest.approx(0.1)
    assert ra["n"] == 4


def test_rate_agreement_too_few_points():
    assert contraction.rate_agreement([1.0, np.nan], [1.0, 2.0])["pearson"] is None


def test_contraction_summary_handles_undefined_fits():
    cs = contraction.contraction_summary([0, 1, 2, 3], [1.0, 0.9, 0.5, 0.6],
                                         [np.nan, np.nan, 0.8, 0.7], [np.nan, np.nan, 0.9, 0.95])
    assert cs["total_contraction_min"] == 0.5 and cs["total_contraction_min_step"] == 2.0
    assert cs["total_contraction_final"] == 0.6
    assert cs["fit_defined_frac"] == 0.5
    assert cs["rho2_per_layer_median"] == pytest.approx(0.75)
    assert cs["rho2_per_layer_final"] == 0.7


def test_sink_half_rise_and_lag():
    steps, ratio = [0, 10, 100, 1000], [1.0, 1.0, 2.0, 3.0]
    hr = coemergence.half_rise(steps, ratio)
    assert hr["level"] == 2.0 and hr["first"] == 100.0 and hr["interpolated"] == 100.0
    hr = coemergence.half_rise([0, 10, 100, 1000], [1.0, 1.5, 2.5, 3.0])
    assert hr["interpolated"] == pytest.approx(10 ** 1.5)
    st = coemergence.sink_trajectory(steps, ratio)
    assert st["initial"] == 1.0 and st["final"] == 3.0 and st["max_step"] == 1000.0
    assert coemergence.co_emergence_lag(100.0, 1000.0) == pytest.approx(-1.0)
    assert coemergence.co_emergence_lag(None, 1000.0) is None
    assert coemergence.co_emergence_lag(0.0, 1000.0) is None
    assert coemergence.half_rise(steps, [3.0, 2.0, 1.0, 1.0])["first"] is None
    assert math.isclose(coemergence.half_rise(steps, ratio)["rise"], 2.0)


def test_final_total_contraction_is_the_last_measured_one():
    from icl_probe.stats.contraction import contraction_summary

    out = contraction_summary([0, 10, 100], [1.0, 0.6, float("nan")])
    assert out["total_contraction_final"] == 0.6 and out["total_contraction_final_step"] == 10.0
