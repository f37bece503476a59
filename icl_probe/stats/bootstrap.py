"""95 % intervals for statistics of trajectories whose checkpoints carry a seed spread.

The per-checkpoint results give, for every metric, the mean over seeds and the
population std over seeds. A replicate trajectory draws each checkpoint's value
independently from Normal(mean, std / sqrt(n_seeds)) (the sampling spread of a
mean of n_seeds seeds) and recomputes the statistic; the interval is the 2.5 and
97.5 percentiles over the replicates where the statistic is defined. The draw
uses only the table's mean and std columns, so the per-model aggregation and
``icl-probe aggregate --table`` give the same intervals, and a fixed ``seed``
makes them reproducible.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np


def parametric_bootstrap(
    statistic: Callable[[dict], Mapping[str, float | None]],
    means: Mapping[str, np.ndarray],
    stds: Mapping[str, np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    n_seeds: int = 3,
) -> dict:
    """Percentile intervals of ``statistic`` over perturbed trajectories.

    means: name -> (n,) per-checkpoint means; stds: name -> (n,) population std
    over seeds (missing or non-finite std = no spread for that entry);
    statistic: maps a dict like ``means`` to name -> scalar (None = undefined).
    Returns {"ci": name -> [lo, hi] or None, "defined_frac": name -> fraction of
    replicates where the statistic was defined}. With no spread anywhere (no
    finite positive std) returns empty dicts: no interval is claimed.
    """
    n_boot = int(n_boot)
    scale = {}
    for name, sd in stds.items():
        if name in means:
            sd = np.nan_to_num(np.asarray(sd, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
            if np.any(sd > 0):
                scale[name] = sd / np.sqrt(max(int(n_seeds), 1))
    if not scale or n_boot <= 0:
        return {"ci": {}, "defined_frac": {}}
    rng = np.random.default_rng(seed)
    draws: dict[str, list] = {}
    names = sorted(scale)
    for _ in range(n_boot):
        rep = dict(means)
        for name in names:
            mu = np.asarray(means[name], dtype=float)
            rep[name] = mu + rng.standard_normal(mu.shape) * scale[name]
        for key, val in statistic(rep).items():
            draws.setdefault(key, []).append(np.nan if val is None else float(val))
    ci, frac = {}, {}
    for key, vals in draws.items():
        v = np.asarray(vals)
        ok = np.isfinite(v)
        frac[key] = float(ok.mean())
        ci[key] = [float(np.percentile(v[ok], 2.5)), float(np.percentile(v[ok], 97.5))] if ok.any() else None
    return {"ci": ci, "defined_frac": frac}
