"""Contraction across training: predicted vs observed rate, induction surprisal fit.

Inputs are per-checkpoint trajectories (n,) ordered by step.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def _finite_pairs(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def correlations(a, b) -> dict:
    """Pearson and Spearman correlation of paired values over their finite pairs.

    a, b: (n,). Returns {"n", "pearson", "spearman"}; the correlations are None
    with fewer than 3 pairs or a constant input.
    """
    x, y = _finite_pairs(a, b)
    out = {"n": int(x.size), "pearson": None, "spearman": None}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    out["pearson"] = float(np.corrcoef(x, y)[0, 1])
    out["spearman"] = float(np.corrcoef(sps.rankdata(x), sps.rankdata(y))[0, 1])
    return out


def rate_agreement(rho_pred, rho_obs, rate_rel_error=None) -> dict:
    """How well the readout's slope predicts the observed per-layer contraction.

    rho_pred = 1 - slope_alpha and rho_obs (per-layer residual ratio), (n,)
    dimensionless, across checkpoints. Returns the correlations of rho_pred with
    rho_obs, the median rate_rel_error (from the given column, or computed as
    abs(rho_pred - rho_obs) / rho_obs) and the median signed difference.
    """
    x, y = np.asarray(rho_pred, dtype=float), np.asarray(rho_obs, dtype=float)
    out = correlations(x, y)
    if rate_rel_error is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rate_rel_error = np.abs(x - y) / y
    rre = np.asarray(rate_rel_error, dtype=float)
    rre = rre[np.isfinite(rre)]
    out["median_rate_rel_error"] = float(np.median(rre)) if rre.size else None
    d = x - y
    d = d[np.isfinite(d)]
    out["median_pred_minus_obs"] = float(np.median(d)) if d.size else None
    return out


def contraction_summary(steps, total_contraction=None, rho2_per_layer=None,
                        geometric_fit_r2=None) -> dict:
    """Summary of the induction surprisal contraction across checkpoints.

    total_contraction: (n,) min_l e_l / e_0 (dimensionless; < 1 = surprisal falls
    with depth); rho2_per_layer: (n,) per-layer contraction of the geometric fit
    (NaN where the fit is undefined); geometric_fit_r2: (n,). Returns the final
    values (total_contraction at the last checkpoint that measured it, and that
    step; rho2 at the last checkpoint), the minimum total contraction and its step, the fraction of
    checkpoints with a defined fit, and the median fit R^2 and rho2 over them.
    """
    s = np.asarray(steps, dtype=float)
    out: dict = {}
    if total_contraction is not None:
        tc = np.asarray(total_contraction, dtype=float)
        if np.isfinite(tc).any():
            i = int(np.nanargmin(tc))
            out["total_contraction_min"] = float(tc[i])
            out["total_contraction_min_step"] = float(s[i])
        ok = np.flatnonzero(np.isfinite(tc))
        out["total_contraction_final"] = float(tc[ok[-1]]) if ok.size else None
        out["total_contraction_final_step"] = float(s[ok[-1]]) if ok.size else None
    if rho2_per_layer is not None:
        r2 = np.asarray(rho2_per_layer, dtype=float)
        ok = np.isfinite(r2)
        out["fit_defined_frac"] = float(ok.mean()) if r2.size else None
        out["rho2_per_layer_median"] = float(np.median(r2[ok])) if ok.any() else None
        out["rho2_per_layer_final"] = float(r2[-1]) if ok.size and ok[-1] else None
    if geometric_fit_r2 is not None:
        g = np.asarray(geometric_fit_r2, dtype=float)
        ok = np.isfinite(g)
        out["geometric_fit_r2_median"] = float(np.median(g[ok])) if ok.any() else None
    return out
