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
        xc = xi - xi.mean()
        sxx = float(xc @ xc)
        b = float(xc @ (yi - yi.mean())) / sxx if sxx > 0 else 0.0
        pred = yi.mean() + b * (x[i] - xi.mean())
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
        out["spearman"] = float(np.corrcoef(sps.rankdata(x), sps.rankdata(y))[0, 1])
        out["pearson"] = float(np.corrcoef(x, y)[0, 1])
    out["loo_skill"] = loo_skill(x, y)
    return out


DEFAULT_PAIRS = (
    ("error_reduction", "error_reduction"),
    ("sign_agreement", "sign_agreement"),
    ("error_reduction", "induction_acc"),
    ("error_reduction", "ar_acc"),
)


def forecast_across_models(trajectories: dict, feature: str, target: str, step: float = 4000,
                           n_boot: int = 1000, seed: int = 0, n_seeds: int = 3,
                           min_models: int = MIN_MODELS) -> dict:
    """Forecast a final-checkpoint ``target`` from an early-checkpoint ``feature`` across models.

    trajectories: model -> (steps (n,), means name -> (n,), stds name -> (n,))
    as from ``icl_probe.stats.model.trajectory``. The feature is read at the
    checkpoint nearest ``step``, the target at the last one. Returns ``forecast``'s
    dict plus per-model values and, where the inputs carry a seed spread, 95 %
    intervals of the three statistics (parametric draws of every per-model value
    from Normal(mean, std / sqrt(n_seeds)), deterministic ``seed``).
    """
    rows = []
    for model, (steps, m, sd) in trajectories.items():
        if feature not in m or target not in m or not len(steps):
            continue
        i = nearest_index(steps, step)
        rows.append((model, float(steps[i]), m[feature][i], sd.get(feature, np.full(len(steps), np.nan))[i],
                     m[target][-1], sd.get(target, np.full(len(steps), np.nan))[-1]))
    out = forecast([r[2] for r in rows], [r[4] for r in rows], min_models)
    out.update(feature=feature, target=target, forecast_step=step,
               models={r[0]: {"feature_step": r[1], "feature": _f(r[2]), "target": _f(r[4])} for r in rows})
    if out["loo_skill"] is None and out["spearman"] is None:
        return out
    x, xs, y, ys = (np.array([r[k] for r in rows], dtype=float) for k in (2, 3, 4, 5))
    xs, ys = (np.nan_to_num(a, nan=0.0) / np.sqrt(max(n_seeds, 1)) for a in (xs, ys))
    if n_boot > 0 and (np.any(xs > 0) or np.any(ys > 0)):
        rng = np.random.default_rng(seed)
        X = x + rng.standard_normal((int(n_boot), x.size)) * xs
        Y = y + rng.standard_normal((int(n_boot), y.size)) * ys
        draws = {"spearman": _rowwise_pearson(_ranks(X), _ranks(Y)), "pearson": _rowwise_pearson(X, Y),
                 "loo_skill": _rowwise_loo_skill(X, Y)}
        out["ci"] = {}
        for k, v in draws.items():
            v = v[np.isfinite(v)]
            out["ci"][k] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else None
    return out


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis of (B, m)."""
    return sps.rankdata(a, axis=-1)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of (B, m) arrays (NaN for a constant row)."""
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.sqrt((ac * ac).sum(1) * (bc * bc).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ac * bc).sum(1) / den, np.nan)


def _rowwise_loo_skill(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``loo_skill`` of each row pair of (B, m) arrays, vectorised over rows."""
    B, m = x.shape
    err_fit, err_mean = np.zeros(B), np.zeros(B)
    for i in range(m):
        keep = np.arange(m) != i
        xi, yi = x[:, keep], y[:, keep]
        xm, ym = xi.mean(1), yi.mean(1)
        xc = xi - xm[:, None]
        sxx = (xc * xc).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = np.where(sxx > 0, (xc * (yi - ym[:, None])).sum(1) / sxx, 0.0)
        err_fit += (y[:, i] - (ym + b * (x[:, i] - xm))) ** 2
        err_mean += (y[:, i] - ym) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(err_mean > 0, 1.0 - err_fit / err_mean, np.nan)
