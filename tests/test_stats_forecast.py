"""Cross-model forecast on constructed models."""

import numpy as np
import pytest

from icl_probe.stats.forecast import forecast, forecast_across_models, loo_skill, nearest_index


def test_forecast_on_an_exact_linear_relation():
    x = np.array([0.1, 0.5, 0.9, 1.4, 2.0])
    fc = forecast(x, 3 * x + 1)
    assert fc["n_models"] == 5
    assert fc["spearman"] == pytest.approx(1.0) and fc["pearson"] == pytest.approx(1.0)
    assert fc["loo_skill"] == pytest.approx(1.0)


def test_forecast_needs_four_models():
    fc = forecast([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert fc["spearman"] is None and fc["loo_skill"] is None and "needs >= 4" in fc["note"]


def test_loo_skill_against_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=6), rng.normal(size=6)
    fit, base = [], []
    for i in range(6):
        k = np.arange(6) != i
        b, a = np.polyfit(x[k], y[k], 1)
        fit.append((y[i] - a - b * x[i]) ** 2)
        base.append((y[i] - y[k].mean()) ** 2)
    assert loo_skill(x, y) == pytest.approx(1 - np.mean(fit) / np.mean(base))


def test_nearest_index():
    assert nearest_index([0, 1000, 3000, 5000], 4000) == 2  # tie: the earlier
    assert nearest_index([0, 1000, 3000, 5000], 4600) == 3


def test_forecast_across_models_reads_early_feature_and_final_target():
    steps = np.array([0, 1000, 4000, 8000, 16000], dtype=float)
    trajs = {}
    for k, scale in enumerate([1.0, 1.5, 2.0, 2.5, 3.0]):
        er = scale * np.array([0.0, 0.2, 1.0, 1.5, 2.0])
        trajs[f"m{k}"] = (steps, {"error_reduction": er}, {"error_reduction": np.full(5, 0.05)})
    fc = forecast_across_models(trajs, "error_reduction", "error_reduction", step=4100, n_boot=200)
    assert fc["models"]["m2"] == {"feature_step": 4000.0, "feature": 2.0, "target": 4.0}
    assert fc["spearman"] == pytest.approx(1.0) and fc["loo_skill"] == pytest.approx(1.0)
    lo, hi = fc["ci"]["pearson"]
    assert lo <= 1.0 and hi <= 1.0 + 1e-12 and lo > 0.9
    again = forecast_across_models(trajs, "error_reduction", "error_reduction", step=4100, n_boot=200)
    assert again["ci"] == fc["ci"]  # deterministic
