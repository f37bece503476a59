"""The 95 % intervals cover the truth in simulated reruns (a small version of benchmarks/coverage.py).

The full study (300+ trajectories per path, table in docs/metrics.md "Coverage")
takes minutes; this one runs 120 trajectories of the workflow path with 200
replicates, so the band is wide (3 binomial standard deviations around 95 %):
it catches intervals that are gone, collapsed or misplaced, not a point of
coverage.
"""

import importlib.util

import numpy as np
import pytest

from workflow_utils import REPO

_spec = importlib.util.spec_from_file_location("coverage_study", REPO / "benchmarks" / "coverage.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)

pytestmark = pytest.mark.slow


def test_intervals_cover_the_truth_in_simulated_reruns():
    steps = study.PYTHIA_STEPS
    truth = study.truth_curves(steps)
    rng = np.random.default_rng([20, 0])
    runs = [study.one_run(steps, truth, rng, "workflow", 200) for _ in range(120)]
    for name in study.STATS:
        v = np.array([r[name] for r in runs], dtype=float)
        assert np.isfinite(v).all(), name  # every run has an interval for every statistic
        assert 0.88 <= v.mean() <= 1.0, (name, v.mean())
    assert all(r["_label"] == "three-phase" for r in runs)
