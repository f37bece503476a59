"""Cross-model forecast: does an early-checkpoint feature predict a final-checkpoint target?

One value per model; needs at least ``MIN_MODELS`` usable models. Every
statistic comes with a permutation p-value (target permuted across models
relative to the feature) and a 95 % interval from a bootstrap over models
(expanded percentile, see ``bootstrap_intervals``). With fewer than
``MIN_MODELS`` usable models every statistic is None.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from scipy import stats as sps

MIN_MODELS = 4
DEFAULT_TOLERANCE = 0.25  # |step used - step requested| <= tolerance * step requested
EXACT_MAX_MODELS = 8  # exact enumeration of all m! permutations up to here (8! = 40320)
N_PERM = 9999  # Monte Carlo permutations above EXACT_MAX_MODELS
MIN_DEFINED_FRACTION = 0.5  # an interval needs at least this fraction of defined replicates
STATISTICS = ("spearman", "pearson", "loo_skill")
CI_METHOD = ("expanded percentile 95 % bootstrap over models (Hesterberg 2015): {n_boot} resamples of the "
             "{m} models with replacement (seed {seed}){noise}; the interval is the bootstrap distribution's "
             "{q:.4g} and {q1:.4g} quantiles, i.e. the percentile interval widened for small m by "
             "Phi(-sqrt(m/(m-1)) t_(m-1, 0.975)) in place of 0.025 (the plain 2.5/97.5 percentile interval of "
             "Pearson's r covers ~91 % at m = 12); replicates where a statistic is undefined (a constant "
             "resample) are dropped, ci_defined_fraction gives the defined share; an interval needs at least "
             f"{MIN_DEFINED_FRACTION:.0%} defined")
_TIE = 1e-10  # relative slack when comparing a permuted statistic with the observed one


def _not_enough(min_models: int, n: int) -> str:
    return f"not enough models (n < {min_models}): needs >= {min_models} models with finite values, has {n}"


def nearest_index(steps, step: float) -> int:
    """Index of the checkpoint nearest to ``step`` (absolute step distance; ties: earlier)."""
    s = np.asarray(steps, dtype=float)
    if s.size == 0:
        raise ValueError("empty trajectory")
    return int(np.argmin(np.abs(s - step)))


def feature_checkpoint(steps, values, step: float, tolerance: float = DEFAULT_TOLERANCE):
    """(index, None) of the checkpoint nearest ``step`` with a finite value, or (None, reason).

    Only checkpoints with a finite ``values`` entry count; the nearest one
    (ties: earlier) must satisfy |steps[i] - step| <= tolerance * step.
    """
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    ok = np.flatnonzero(np.isfinite(v) & np.isfinite(s))
    if ok.size == 0:
        return None, "no finite value at any checkpoint"
    i = int(ok[nearest_index(s[ok], step)])
    if abs(s[i] - step) > tolerance * abs(step):
        return None, (f"nearest checkpoint with a finite value is step {_step(s[i])}, outside the tolerance "
                      f"|step - {_step(step)}| <= {tolerance:g} x {_step(step)}")
    return i, None


def target_checkpoint(steps, values):
    """(index, None) of the last checkpoint with a finite value, or (None, reason)."""
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    ok = np.flatnonzero(np.isfinite(v) & np.isfinite(s))
    if ok.size == 0:
        return None, "no finite value at any checkpoint"
    return int(ok[np.argmax(s[ok])]), None


def loo_skill(feature, target) -> float | None:
    """Leave-one-out skill of a linear fit target ~ a + b * feature: 1 - MSE_loo / MSE_mean.

    feature, target: (m,) one value per model. For each model the line is fit on
    the others and predicts it (MSE_loo); the baseline predicts it by the others'
    mean (MSE_mean). 1 = perfect, 0 = no better than the mean, < 0 worse.
    None with fewer than 3 models or a zero baseline.
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    if x.size < 3:
        return None
    return _f(_rowwise_loo_skill(x[None, :], y[None, :])[0])


def statistics(feature, target) -> dict:
    """{"spearman", "pearson", "loo_skill"} of one (m,) sample; None where undefined."""
    x, y = np.asarray(feature, dtype=float)[None, :], np.asarray(target, dtype=float)[None, :]
    return {k: _f(v[0]) for k, v in _rowwise_statistics(x, y).items()}


@lru_cache(maxsize=None)
def _all_permutations(m: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(m))), dtype=np.intp)


def permutation_pvalues(feature, target, n_perm: int = N_PERM, seed: int = 0,
                        exact_max: int = EXACT_MAX_MODELS) -> dict:
    """Permutation p-values of Spearman, Pearson (two-sided) and LOO skill (one-sided, greater).

    The target is permuted across models relative to the feature. With
    m <= ``exact_max`` models all m! permutations are enumerated (identity
    included) and p = #{|stat_perm| >= |stat_obs|} / m!; otherwise ``n_perm``
    random permutations from ``seed`` give p = (b + 1) / (n_perm + 1). The
    LOO skill's p counts skill_perm >= skill_obs. Returns
    {"p_spearman", "p_pearson", "p_loo_skill", "method": "exact" | "monte carlo",
    "n_permutations"}; a p-value is None where the observed statistic is undefined.
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    m = x.size
    obs = statistics(x, y)
    exact = m <= exact_max
    if exact:
        idx = _all_permutations(m)
    else:
        rng = np.random.default_rng([seed, 1])
        idx = rng.permuted(np.tile(np.arange(m), (int(n_perm), 1)), axis=1)
    perm = _rowwise_statistics(np.broadcast_to(x, idx.shape), y[idx])
    out = {}
    for k in STATISTICS:
        o, v = obs[k], perm[k]
        if o is None:
            out[f"p_{k}"] = None
            continue
        if k == "loo_skill":
            hits = v >= o - _TIE * max(1.0, abs(o))
        else:
            hits = np.abs(v) >= abs(o) - _TIE * max(1.0, abs(o))
        b = int(np.count_nonzero(hits & np.isfinite(v)))
        out[f"p_{k}"] = b / idx.shape[0] if exact else (b + 1) / (idx.shape[0] + 1)
    out.update(method="exact" if exact else "monte carlo", n_permutations=int(idx.shape[0]))
    return out


def expanded_quantile(m: int, level: float = 0.95) -> float:
    """Lower quantile of the expanded percentile interval: Phi(-sqrt(m/(m-1)) t_(m-1, (1+level)/2)).

    Corrects the plain percentile interval's narrowness for small m (the
    bootstrap spread is too small by sqrt((m-1)/m), and t, not z, applies);
    tends to (1 - level) / 2 as m grows. Hesterberg (2015), "What teachers
    should know about the bootstrap", The American Statistician 69(4).
    """
    if m < 2:
        return (1 - level) / 2
    return float(sps.norm.cdf(-np.sqrt(m / (m - 1)) * sps.t.ppf((1 + level) / 2, m - 1)))


def bootstrap_intervals(feature, target, feature_sd=None, target_sd=None, n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95, expand: bool = True) -> dict:
    """Expanded percentile intervals of the statistics from a bootstrap over models.

    Each replicate resamples the m models with replacement and, where
    ``feature_sd`` / ``target_sd`` (per-model standard errors, (m,)) are given,
    adds a Normal(0, sd) draw to every resampled value (seed noise). Replicates
    where a statistic is undefined are dropped. The interval is the
    ``expanded_quantile(m, level)`` and 1 - that quantile of the replicates
    (``expand=False``: the plain (1 -+ level) / 2 percentiles). Returns
    {"ci": name -> [lo, hi] or None, "ci_defined_fraction": name -> fraction,
    "ci_quantiles": [q, 1 - q]}; an interval is None when fewer than
    ``MIN_DEFINED_FRACTION`` of the replicates define it.
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    m = x.size
    xs = np.zeros(m) if feature_sd is None else np.nan_to_num(np.asarray(feature_sd, dtype=float), nan=0.0)
    ys = np.zeros(m) if target_sd is None else np.nan_to_num(np.asarray(target_sd, dtype=float), nan=0.0)
    if n_boot <= 0 or m == 0:
        return {"ci": dict.fromkeys(STATISTICS), "ci_defined_fraction": dict.fromkeys(STATISTICS),
                "ci_quantiles": None}
    rng = np.random.default_rng([seed, 2])
    idx = rng.integers(0, m, size=(int(n_boot), m))
    X, Y = x[idx], y[idx]
    if np.any(xs > 0) or np.any(ys > 0):
        X = X + rng.standard_normal(idx.shape) * xs[idx]
        Y = Y + rng.standard_normal(idx.shape) * ys[idx]
    draws = _rowwise_statistics(X, Y)
    q = expanded_quantile(m, level) if expand else (1 - level) / 2
    ci, frac = {}, {}
    for k, v in draws.items():
        v = v[np.isfinite(v)]
        frac[k] = v.size / idx.shape[0]
        ok = v.size and frac[k] >= MIN_DEFINED_FRACTION
        ci[k] = [float(np.quantile(v, q)), float(np.quantile(v, 1 - q))] if ok else None
    return {"ci": ci, "ci_defined_fraction": frac, "ci_quantiles": [q, 1 - q]}


def forecast(feature, target, min_models: int = MIN_MODELS, n_perm: int = N_PERM, seed: int = 0) -> dict:
    """Spearman, Pearson and leave-one-out skill of target on feature across models, with p-values.

    feature, target: (m,) per-model values (non-finite pairs are dropped).
    Returns {"n_models", "spearman", "pearson", "loo_skill", "p_spearman",
    "p_pearson", "p_loo_skill", "permutation": {"method", "n_permutations"}}
    (see ``permutation_pvalues``); every statistic and p-value is None (with
    "note") when fewer than ``min_models`` models remain, and a statistic is
    None where it is undefined (a constant feature or target).
    """
    x, y = np.asarray(feature, dtype=float), np.asarray(target, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n_models": int(x.size), **dict.fromkeys(STATISTICS), **{f"p_{k}": None for k in STATISTICS},
           "permutation": None}
    if x.size < max(min_models, 3):
        out["note"] = _not_enough(min_models, x.size)
        return out
    out.update(statistics(x, y))
    p = permutation_pvalues(x, y, n_perm=n_perm, seed=seed)
    out.update({f"p_{k}": p[f"p_{k}"] for k in STATISTICS})
    out["permutation"] = {"method": p["method"], "n_permutations": p["n_permutations"],
                          "alternative": {"spearman": "two-sided", "pearson": "two-sided",
                                          "loo_skill": "greater"}}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "feature or target constant across models: correlations undefined"
    return out


DEFAULT_PAIRS = (
    ("error_reduction", "error_reduction"),
    ("sign_agreement", "sign_agreement"),
    ("error_reduction", "induction_acc"),
    ("error_reduction", "ar_acc"),
)


def select_models(trajectories: dict, feature: str, target: str, step: float,
                  tolerance: float = DEFAULT_TOLERANCE) -> tuple[list, dict]:
    """Per-model (feature, target) rows and the models left out with the reason.

    trajectories: model -> (steps, means, stds). The feature is read at the
    checkpoint nearest ``step`` with a finite feature value, within
    ``tolerance`` x ``step``; the target at the last checkpoint with a finite
    target value, which must come after the feature checkpoint. Returns
    (rows, left_out): rows are (model, feature_step, feature, feature_sd,
    target_step, target, target_sd); left_out maps model -> reason.
    """
    rows, left_out = [], {}
    for model, (steps, m, sd) in trajectories.items():
        steps = np.asarray(steps, dtype=float)
        missing = [n for n in dict.fromkeys((feature, target)) if n not in m]
        if missing:
            left_out[model] = f"no {' or '.join(missing)} column"
            continue
        if not steps.size:
            left_out[model] = "no checkpoints"
            continue
        i, why = feature_checkpoint(steps, m[feature], step, tolerance)
        if i is None:
            left_out[model] = f"feature {feature}: {why}"
            continue
        j, why = target_checkpoint(steps, m[target])
        if j is None:
            left_out[model] = f"target {target}: {why}"
            continue
        if steps[j] <= steps[i]:
            left_out[model] = (f"target {target}: last finite value at step {_step(steps[j])}, "
                               f"not after the feature step {_step(steps[i])}")
            continue
        nan = np.full(steps.size, np.nan)
        rows.append((model, float(steps[i]), float(m[feature][i]), float(sd.get(feature, nan)[i]),
                     float(steps[j]), float(m[target][j]), float(sd.get(target, nan)[j])))
    return rows, left_out


def forecast_across_models(trajectories: dict, feature: str, target: str, step: float = 4000,
                           n_boot: int = 1000, seed: int = 0, n_seeds: int = 3,
                           min_models: int = MIN_MODELS, tolerance: float = DEFAULT_TOLERANCE,
                           n_perm: int = N_PERM) -> dict:
    """Forecast a final-checkpoint ``target`` from an early-checkpoint ``feature`` across models.

    trajectories: model -> (steps (n,), means name -> (n,), stds name -> (n,))
    as from ``icl_probe.stats.model.trajectory``; which checkpoints are read
    and which models are left out: ``select_models``. JSON-ready (None, never NaN)::

        {"feature", "target", "forecast_step", "tolerance", "n_models",
         "spearman", "pearson", "loo_skill",            # None: undefined / too few models
         "p_spearman", "p_pearson", "p_loo_skill",      # permutation p-values
         "permutation": {"method": "exact" | "monte carlo", "n_permutations",
                         "alternative": {"spearman": "two-sided", ...}} | None,
         "ci": {"spearman": [lo, hi] | None, "pearson": ..., "loo_skill": ...},
         "ci_defined_fraction": {name: fraction | None}, "ci_method": text | None,
         "models": {model: {"feature_step", "feature", "target_step", "target"}},
         "left_out": {model: reason},
         "note": text}                                  # only when something is off

    With fewer than ``min_models`` usable models every statistic, p-value and
    interval is None and the note starts "not enough models (n < 4)".
    Intervals: ``bootstrap_intervals`` (expanded percentile) over the usable
    models, with each value's seed spread std / sqrt(n_seeds) added where std
    columns exist; ``ci_method`` spells it out.
    """
    rows, left_out = select_models(trajectories, feature, target, step, tolerance)
    x, xs, y, ys = (np.array([r[k] for r in rows], dtype=float) for k in (2, 3, 5, 6))
    out = {"feature": feature, "target": target, "forecast_step": step, "tolerance": tolerance}
    out.update(forecast(x, y, min_models, n_perm=n_perm, seed=seed))
    out.update(ci=dict.fromkeys(STATISTICS), ci_defined_fraction=dict.fromkeys(STATISTICS), ci_method=None)
    if out["permutation"] is not None and n_boot > 0:
        xs, ys = (np.nan_to_num(a, nan=0.0) / np.sqrt(max(n_seeds, 1)) for a in (xs, ys))
        boot = bootstrap_intervals(x, y, xs, ys, n_boot=n_boot, seed=seed)
        q = boot.pop("ci_quantiles")
        out.update(boot)
        noise = (f", each resampled value plus a Normal(0, std / sqrt({max(n_seeds, 1)})) seed-noise draw"
                 if np.any(xs > 0) or np.any(ys > 0) else "")
        out["ci_method"] = CI_METHOD.format(n_boot=int(n_boot), m=x.size, seed=seed, noise=noise, q=q[0], q1=q[1])
        out["ci"] = {k: (None if out[k] is None else v) for k, v in out["ci"].items()}
    out["models"] = {r[0]: {"feature_step": r[1], "feature": _f(r[2]), "target_step": r[4], "target": _f(r[5])}
                     for r in rows}
    out["left_out"] = left_out
    if "note" in out:  # keep the note last, readable in the JSON
        out["note"] = out.pop("note")
    return out


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _step(s: float):
    s = float(s)
    return int(s) if s.is_integer() else s


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis of (B, m)."""
    return sps.rankdata(a, axis=-1)


def _rowwise_statistics(x: np.ndarray, y: np.ndarray) -> dict:
    """Spearman, Pearson and LOO skill of each row pair of (B, m) arrays (NaN where undefined)."""
    return {"spearman": _rowwise_pearson(_ranks(x), _ranks(y)), "pearson": _rowwise_pearson(x, y),
            "loo_skill": _rowwise_loo_skill(x, y)}


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of (B, m) arrays (NaN for a constant row)."""
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    den = np.sqrt((ac * ac).sum(1) * (bc * bc).sum(1))
    # a row constant up to rounding (e.g. one value repeated) counts as constant
    scale = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12 * scale, (ac * bc).sum(1) / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def _rowwise_loo_skill(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``loo_skill`` of each row pair of (B, m) arrays, vectorised over rows (NaN where undefined)."""
    B, m = x.shape
    if m < 3:
        return np.full(B, np.nan)
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
    scale = (y * y).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(err_mean > 1e-24 * scale, 1.0 - err_fit / err_mean, np.nan)
