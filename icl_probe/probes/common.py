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


def _spread_floor(v: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Sum of squares below which ``v [..., N]`` counts as constant (rounding noise only), per row
    (over the entries ``mask`` keeps)."""
    a = np.abs(v) if mask is None else np.where(mask, np.abs(v), 0.0)
    n = v.shape[-1] if mask is None else mask.sum(axis=-1)
    scale = np.maximum(1.0, a.max(axis=-1, initial=0.0))
    return n * (1e-12 * scale) ** 2


def ols_rows(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None):
    """:func:`ols` of each row: ``x, y [..., N]`` (``mask [..., N]``: the points each fit uses)
    -> (slope, intercept, r, r2), each ``[...]``, NaN where :func:`ols` gives NaN."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    w = np.ones(x.shape) if mask is None else np.broadcast_to(mask, x.shape).astype(np.float64)
    n = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(axis=-1) / n
        my = (w * y).sum(axis=-1) / n
        xc = (x - mx[..., None]) * w
        yc = (y - my[..., None]) * w
        sxx, syy, sxy = (xc * xc).sum(axis=-1), (yc * yc).sum(axis=-1), (xc * yc).sum(axis=-1)
        m = None if mask is None else w > 0
        ok = (n >= 2) & (sxx > _spread_floor(x, m))
        slope = np.where(ok, sxy / sxx, np.nan)
        intercept = np.where(ok, my - slope * mx, np.nan)
        r = np.where(ok & (syy > _spread_floor(y, m)), sxy / np.sqrt(sxx * syy), np.nan)
    return slope, intercept, r, r * r


def ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares ``y ~ slope * x + intercept``; returns (slope, intercept, r, r2).

    ``x, y [N]`` (other shapes are flattened). NaN everywhere when x has no spread; r (Pearson)
    is NaN when y has none (spread below rounding noise, 1e-12 relative, counts as none).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        return (np.nan,) * 4
    return tuple(float(v) for v in ols_rows(x, y))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of ``x, y [N]`` (NaN if either has no spread or N < 2)."""
    return ols(x, y)[2]


def rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``a [N]``, ties sharing their mean rank."""
    return rankdata_rows(np.ravel(a))


def rankdata_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis of ``a [..., N]``, ties sharing their mean rank."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[-1]
    order = np.argsort(a, axis=-1, kind="mergesort")
    v = np.take_along_axis(a, order, axis=-1)
    pos = np.broadcast_to(np.arange(n), a.shape)
    starts = np.ones(a.shape, dtype=bool)
    starts[..., 1:] = v[..., 1:] != v[..., :-1]
    ends = np.ones(a.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=-1)  # first position of the tie group
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of ``x, y [N]`` (Pearson of average ranks)."""
    return pearson(rankdata(np.ravel(x)), rankdata(np.ravel(y)))


def _take(arr: np.ndarray, idx: np.ndarray, axis: int | None) -> np.ndarray:
    return arr if axis is None or arr is None else np.take(arr, idx, axis=axis)


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
    batched: bool = False,
) -> dict:
    """Aggregate ``metric_fn`` over seeds with a bootstrap over prompts.

    ``per_seed_inputs[s]`` are the keyword arrays of seed s; ``prompt_axes[name]``
    is the prompt axis of each (None: not resampled); ``fixed`` are extra keyword
    arguments (thresholds). Returns ``{"scalars": {name, name_std, name_ci},
    "per_seed": {name: [S]}, "per_layer": {name: [..]}, "per_head": {name: [[..]]}}``
    where per-layer and per-head arrays are means over seeds. With ``per_prompt`` (a probe's
    function of the same keyword arrays and ``fixed``) the result also has ``"per_prompt"``
    (:func:`per_prompt_values`). ``batched``: ``metric_fn`` takes a leading resample axis
    (:attr:`icl_probe.probes.base.Probe.batched`); the values are the same as one call per resample.
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
        draws = bootstrap_indices(per_seed_inputs, prompt_axes, int(n_boot), int(rng_seed))
        per_seed_boot = np.stack([
            _resampled_values(metric_fn, inputs, prompt_axes, idx, scalars, fixed, batched)
            for inputs, idx in zip(per_seed_inputs, draws)])  # [S, B, scalars]
        boot = _nanmean(per_seed_boot, axis=0)
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


BATCH_BYTES = 32 << 20  # resampled inputs held at once by a batched metric (per chunk)


def bootstrap_indices(per_seed_inputs: Sequence[dict], prompt_axes: dict[str, int | None],
                      n_boot: int, rng_seed: int) -> list[np.ndarray]:
    """Per seed, the prompt indices ``[n_boot, P_s]`` of every resample (with replacement).

    One generator seeded ``rng_seed`` draws resample b of seed 0, of seed 1, .., then resample b+1:
    the draws do not depend on how the metric is evaluated."""
    sizes = []
    for inputs in per_seed_inputs:
        lens = {np.shape(inputs[k])[a] for k, a in prompt_axes.items()
                if a is not None and inputs.get(k) is not None}
        if len(lens) != 1:
            raise ValueError(f"inputs disagree on the number of prompts: {sorted(lens)}")
        sizes.append(lens.pop())
    rng = np.random.default_rng(rng_seed)
    draws = [np.empty((n_boot, n), dtype=np.int64) for n in sizes]
    for b in range(n_boot):
        for s, n in enumerate(sizes):
            draws[s][b] = rng.integers(0, n, size=n)
    return draws


def _scalar_row(res: dict, scalars: Sequence[str]) -> list[float]:
    return [np.nan if res[n] is None else res[n] for n in scalars]


def _resampled_values(metric_fn, inputs: dict, prompt_axes: dict[str, int | None], idx: np.ndarray,
                      scalars: Sequence[str], fixed: dict, batched: bool) -> np.ndarray:
    """``[B, len(scalars)]``: the metric on each resample ``idx[b]`` of one seed's prompts."""
    arrays = {k: v if v is None else np.asarray(v) for k, v in inputs.items()}
    if not batched:
        return np.array([
            _scalar_row(metric_fn(**{k: _take(v, i, prompt_axes.get(k)) for k, v in arrays.items()}, **fixed),
                        scalars) for i in idx], dtype=np.float64).reshape(len(idx), len(scalars))
    resampled = {k: v for k, v in arrays.items() if prompt_axes.get(k) is not None and v is not None}
    per_resample = sum(v.nbytes for v in resampled.values())
    chunk = max(1, int(BATCH_BYTES // max(1, per_resample)))
    out = np.empty((len(idx), len(scalars)))
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        args = {k: (np.moveaxis(np.take(v, part, axis=prompt_axes[k]), prompt_axes[k], 0)
                    if k in resampled else v) for k, v in arrays.items()}
        res = metric_fn(**args, **fixed)
        out[start:start + len(part)] = np.stack(
            [np.full(len(part), np.nan) if res[n] is None else np.asarray(res[n], dtype=np.float64)
             for n in scalars], axis=-1)
    return out
