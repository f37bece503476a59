"""GD readout: does the residual stream move the digit readout toward the least-squares answer?

Pure functions of arrays (see docs/metrics.md, "GD readout").
Per layer l = 0..L and prompt p: y_hat[l, p] = sum_d softmax(lens(h_l)[digit ids])_d * d,
r = y* - y_hat, dy[l, p] = y_hat[l+1, p] - y_hat[l, p].
"""

from __future__ import annotations

import numpy as np

from icl_probe.probes.common import ols, pearson, spearman

SCALARS = ("mean_err_embed", "mean_err_final", "error_reduction", "slope_alpha", "intercept", "r", "r2",
           "sign_agreement", "depth_rho", "rho_pred", "rho_obs", "rate_rel_error", "contracting_frac",
           "curvature_corr")
PER_LAYER = ("mean_err",)
PROMPT_AXES = {"y_hat": 1, "y_star": 0, "x_ctx": 0}
LOG_FLOOR = 1e-6  # abs(r) below this is skipped in the log-linear fits


def expected_digit(digit_logits: np.ndarray) -> np.ndarray:
    """y_hat = sum_d softmax(logits)_d * d; ``[..., 10] -> [...]`` (digits 0..9)."""
    z = np.asarray(digit_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ np.arange(z.shape[-1], dtype=np.float64)


def _per_prompt_log_slopes(abs_r: np.ndarray) -> np.ndarray:
    """OLS slope of log abs(r[l, p]) on l for each prompt, skipping abs(r) < 1e-6.

    ``abs_r [L+1, P] -> [P]``; NaN where fewer than two layers remain.
    """
    l = np.arange(abs_r.shape[0], dtype=np.float64)[:, None]
    m = abs_r >= LOG_FLOOR
    y = np.where(m, np.log(np.where(m, abs_r, 1.0)), 0.0)
    n, sl, sy = m.sum(0), (l * m).sum(0), y.sum(0)
    sll, sly = (l * l * m).sum(0), (l * y).sum(0)
    den = n * sll - sl * sl
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n >= 2) & (den > 0), (n * sly - sl * sy) / den, np.nan)


def gd_metrics(y_hat: np.ndarray, y_star: np.ndarray, x_ctx: np.ndarray) -> dict:
    """Every GD-readout row of the spec for one seed.

    y_hat ``[L+1, P]`` expected digit per layer (l = 0 embedding, L last block) and prompt;
    y_star ``[P]`` exact least-squares answer a*x_q + b; x_ctx ``[P, k]`` in-context x.
    Returns scalars (float, NaN when undefined) and ``mean_err [L+1]``.
    """
    y_hat = np.asarray(y_hat, dtype=np.float64)
    y_star = np.asarray(y_star, dtype=np.float64)
    x_ctx = np.asarray(x_ctx, dtype=np.float64)
    n_l = y_hat.shape[0]
    r = y_star[None, :] - y_hat  # [L+1, P]
    abs_r = np.abs(r)
    mean_err = abs_r.mean(axis=1)
    dy = np.diff(y_hat, axis=0)  # [L, P]
    r_in = r[:-1]
    slope, intercept, corr, r2 = ols(r_in, dy)
    moved = dy != 0
    sign_agreement = float(np.mean(np.sign(dy[moved]) == np.sign(r_in[moved]))) if moved.any() else np.nan
    layer = np.broadcast_to(np.arange(n_l, dtype=np.float64)[:, None], r.shape)
    depth_rho = spearman(layer, -abs_r)
    keep = abs_r >= LOG_FLOOR
    s_obs = ols(layer[keep], np.log(abs_r[keep]))[0] if keep.sum() >= 2 else np.nan
    rho_pred = 1.0 - slope
    rho_obs = float(np.exp(s_obs))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_rel_error = float(abs(rho_pred - rho_obs) / rho_obs)
    rho_p = np.exp(_per_prompt_log_slopes(abs_r))
    a_p = (x_ctx ** 2).sum(axis=1)
    ok = np.isfinite(rho_p)
    curvature_corr = pearson(a_p[ok], rho_p[ok]) if ok.sum() >= 2 else np.nan
    return {
        "mean_err": mean_err,
        "mean_err_embed": float(mean_err[0]),
        "mean_err_final": float(mean_err[-1]),
        "error_reduction": float(mean_err[0] - mean_err[-1]),
        "slope_alpha": slope,
        "intercept": intercept,
        "r": corr,
        "r2": r2,
        "sign_agreement": sign_agreement,
        "depth_rho": depth_rho,
        "rho_pred": rho_pred,
        "rho_obs": rho_obs,
        "rate_rel_error": rate_rel_error,
        "contracting_frac": float(np.mean(abs_r[-1] < abs_r[0])),
        "curvature_corr": curvature_corr,
    }


def per_prompt(y_hat: np.ndarray, y_star: np.ndarray, x_ctx: np.ndarray) -> dict:
    """Per-prompt numerators and denominators of the GD-readout scalars that are ratios of sums.

    Same inputs as :func:`gd_metrics`; returns ``{name: (num [P], den [P] or None)}`` with
    ``gd_metrics(...)[name] == num.sum() / den.sum()`` (``num.mean()`` when den is None):
    error_reduction, mean_err_embed, mean_err_final (den None) and sign_agreement
    (num_p: layers l < L with dy != 0 whose sign matches r; den_p: layers with dy != 0).
    """
    y_hat = np.asarray(y_hat, dtype=np.float64)
    r = np.asarray(y_star, dtype=np.float64)[None, :] - y_hat
    abs_r = np.abs(r)
    dy = np.diff(y_hat, axis=0)
    moved = dy != 0
    agree = moved & (np.sign(dy) == np.sign(r[:-1]))
    return {
        "error_reduction": (abs_r[0] - abs_r[-1], None),
        "sign_agreement": (agree.sum(axis=0).astype(np.float64), moved.sum(axis=0).astype(np.float64)),
        "mean_err_embed": (abs_r[0], None),
        "mean_err_final": (abs_r[-1], None),
    }
