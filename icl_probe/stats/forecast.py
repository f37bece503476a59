"""Cross-model forecast: does an early-checkpoint feature predict a final-checkpoint target?

One value per model; needs at least ``MIN_MODELS`` models.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

MIN_MODELS = 4


def nearest_index(steps, step: float) -> int:
    """Index of the checkpoint nearest to ``step`` (absolute step distance; ties: earlier)."""
    s = np.asarray(steps, dtype=float)
    if s.size == 0:
        raise ValueError("empty trajectory")
    return int(np.argmin(np.abs(s - step)))


def loo_skill(feature, target) -> float | None:
    """Leave-one-out skill of a linear fit target ~ a + b * feature: 1 - MSE_loo / MSE_mean.

    feature, target: (m,) one value per model. For each model the line is fit on
    the others and predicts it (MSE_loo); the baseline predicts it by the others'
    mean (MSE_mean). 1 = perfect, 0 = no better than the mean, < 0 worse.
    None with fewer than 3 models or a zero baseline.
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    m = x.size
    if m < 3:
        return None
    err_fit, err_mean = np.empty(m), np.empty(m)
    for i in range(m):
        keep = np.arange(m) != i
        xi, yi = x[keep], y[keep]
        if np.ptp(xi) == 0:
            pred = yi.mean()
        else:
            b, a = np.polyfit(xi, yi, 1)
            pred = a + b * x[i]
        err_fit[i] = (y[i] - pred) ** 2
        err_mean[i] = (y[i] - yi.mean()) ** 2
    base = err_mean.mean()
    return None if base == 0 else float(1.0 - err_fit.mean() / base)


def forecast(feature, target, min_models: int = MIN_MODELS) -> dict:
    """Spearman, Pearson and leave-one-out skill of target on feature across models.

    feature, target: (m,) per-model values (non-finite pairs are dropped).
    Returns {"n_models", "spearman", "pearson", "loo_skill"}; the statistics are
    None (with "note") when fewer than ``min_models`` models remain.
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n_models": int(x.size), "spearman": None, "pearson": None, "loo_skill": None}
    if x.size < min_models:
        out["note"] = f"needs >= {min_models} models with finite values, has {x.size}"
        return out
    if np.ptp(x) > 0 and np.ptp(y) > 0:
        out["spearman"] = float(sps.spearmanr(x, y)[0])
        out["pearson"] = float(sps.pearsonr(x, y)[0])
    out["loo_skill"] = loo_skill(x, y)
    return out
