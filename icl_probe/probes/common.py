"""Shared statistics of the probes: small closed-form fits and seed/bootstrap aggregation.

A probe's metric function maps per-prompt arrays of one seed to a dict of scalars
and arrays. :func:`summarise` runs it on every seed and reports, per scalar, the
mean over seeds, the population std over seeds (ddof = 0), the per-seed values
and a 95 % bootstrap interval over prompts (prompts resampled with replacement
within each seed, the statistic averaged over seeds; deterministic RNG).
Seeds whose value is null (NaN) are left out of the mean and std. With a probe's
``per_prompt`` function it also keeps, per seed, the per-prompt numerators and
denominators of the scalars that are ratios of per-prompt sums (see :func:`per_prompt_values`).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np


def _spread_floor(v: np.ndarray) -> float:
    """Sum of squares below which ``v`` counts as constant (rounding noise only)."""
    scale = max(1.0, float(np.abs(v).max()))
    return v.size * (1e-12 * scale) ** 2


def ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares ``y ~ slope * x + intercept``; returns (slope, intercept, r, r2).

    ``x, y [N]``. NaN everywhere when x has no spread; r (Pearson) is NaN when y has none
    (spread below rounding noise, 1e-12 relative, counts as none).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        return (np.nan,) * 4
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(xc @ xc), float(yc @ yc), float(xc @ yc)
    if sxx <= _spread_floor(x):
        return (np.nan,) * 4
    slope = sxy / sxx
    intercept = float(y.mean() - slope * x.mean())
    r = sxy / np.sqrt(sxx * syy) if syy > _spread_floor(y) else np.nan
    return float(slope), intercept, float(r), float(r * r)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of ``x, y [N]`` (NaN if either has no spread or N < 2)."""
    return ols(x, y)[2]


def rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``a [N]``, ties sharing their mean rank."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    boundaries = np.flatnonzero(np.diff(sorted_a)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [a.size]])
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of ``x, y [N]`` (Pearson of average ranks)."""
    return pearson(rankdata(np.ravel(x)), rankdata(np.ravel(y)))


def _take(arr: np.ndarray, idx: np.ndarray, axis: int | None) -> np.ndarray:
    return arr if axis is None else np.take(arr, idx, axis=axis)


def _nanmean(values: np.ndarray, axis=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _nanstd(values: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(values, ddof=0)


def summarise(
    metric_fn: Callable[..., dict],
    per_seed_inputs: Sequence[dict],
    prompt_axes: dict[str, int | None],
    *,
    scalars: Sequence[str],
    per_layer: Sequence[str] = (),
    per_head: Sequence[str] = (),
    n_boot: int = 1000,
    rng_seed: int = 0,
    fixed: dict | None = None,
    per_prompt: Callable[..., dict] | None = None,
) -> dict:
    """Aggregate ``metric_fn`` over seeds with a bootstrap over prompts.

    ``per_seed_inputs[s]`` are the keyword arrays of seed s; ``prompt_axes[name]``
    is the prompt axis of each (None: not resampled); ``fixed`` are extra keyword
    arguments (thresholds). Returns ``{"scalars": {name, name_std, name_ci},
    "per_seed": {name: [S]}, "per_layer": {name: [..]}, "per_head": {name: [[..]]}}``
    where per-layer and per-head arrays are means over seeds. With ``per_prompt`` (a probe's
    function of the same keyword arrays and ``fixed``) the result also has ``"per_prompt"``
    (:func:`per_prompt_values`).
    """
    fixed = dict(fixed or {})
    results = [metric_fn(**inputs, **fixed) for inputs in per_seed_inputs]
    per_seed = {n: [float(r[n]) if r[n] is not None else np.nan for r in results] for n in scalars}
    out_scalars: dict[str, object] = {}
    for n in scalars:
        v = np.asarray(per_seed[n], dtype=np.float64)
        out_scalars[n] = float(_nanmean(v)) if np.isfinite(v).any() else None
        out_scalars[f"{n}_std"] = float(_nanstd(v)) if np.isfinite(v).any() else None

    boot = np.full((int(n_boot), len(scalars)), np.nan)
    if n_boot > 0:
        rng = np.random.default_rng(int(rng_seed))
        sizes = []
        for inputs in per_seed_inputs:
            lens = {np.shape(inputs[k])[a] for k, a in prompt_axes.items() if a is not None}
            if len(lens) != 1:
                raise ValueError(f"inputs disagree on the number of prompts: {sorted(lens)}")
            sizes.append(lens.pop())
        for b in range(int(n_boot)):
            vals = np.empty((len(per_seed_inputs), len(scalars)))
            for s, inputs in enumerate(per_seed_inputs):
                idx = rng.integers(0, sizes[s], size=sizes[s])
                res = metric_fn(**{k: _take(np.asarray(v), idx, prompt_axes.get(k)) for k, v in inputs.items()},
                                **fixed)
                vals[s] = [np.nan if res[n] is None else res[n] for n in scalars]
            boot[b] = _nanmean(vals, axis=0)
    for j, n in enumerate(scalars):
        col = boot[:, j]
        col = col[np.isfinite(col)]
        out_scalars[f"{n}_ci"] = (
            [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if col.size else [None, None]
        )

    def seed_mean(name: str):
        stacked = np.stack([np.asarray(r[name], dtype=np.float64) for r in results])
        return _nanmean(stacked, axis=0).tolist()

    out = {
        "scalars": out_scalars,
        "per_seed": per_seed,
        "per_layer": {n: seed_mean(n) for n in per_layer},
        "per_head": {n: seed_mean(n) for n in per_head},
    }
    if per_prompt is not None:
        out["per_prompt"] = per_prompt_values(per_prompt, per_seed_inputs, fixed)
    return out


def per_prompt_values(per_prompt: Callable[..., dict], per_seed_inputs: Sequence[dict],
                      fixed: dict | None = None) -> dict:
    """``{name: {"num": [[P_0], [P_1], ..], "den": same shape or None}}``, one list per seed in seed order.

    ``per_prompt(**inputs, **fixed)`` returns ``{name: (num [P], den [P] or None)}`` for one seed,
    prompts in prompt-file order; the seed's value of ``name`` is ``sum(num) / sum(den)``
    (``mean(num)`` when den is None), and den is None in the result only when it is None for
    every seed. Values are floats (non-finite ones stay NaN/inf; the JSON writer makes them null).
    """
    fixed = dict(fixed or {})
    parts = [per_prompt(**inputs, **fixed) for inputs in per_seed_inputs]
    out: dict[str, dict] = {}
    for name in (parts[0] if parts else {}):
        nums = [np.asarray(p[name][0], dtype=np.float64).ravel() for p in parts]
        dens = [p[name][1] for p in parts]
        out[name] = {
            "num": [v.tolist() for v in nums],
            "den": None if all(d is None for d in dens) else [
                (np.ones_like(v) if d is None else np.asarray(d, dtype=np.float64).ravel()).tolist()
                for v, d in zip(nums, dens)],
        }
    return out
