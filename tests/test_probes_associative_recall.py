import numpy as np
import pytest

from icl_probe.probes.associative_recall import recall_metrics


def test_recall_metrics_by_hand():
    m = recall_metrics(np.log([0.5, 0.25, 1.0, 0.125]), np.array([True, False, True, False]))
    assert m["ar_acc"] == 0.5
    assert m["ar_logp"] == pytest.approx(np.log([0.5, 0.25, 1.0, 0.125]).mean())
