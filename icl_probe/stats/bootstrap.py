"""95 % intervals of statistics across checkpoints: resample what was sampled.

What varies when a probe is rerun on the same checkpoints is the prompts: each
seed draws its own prompt set from the task distribution, and the *same* prompt
set is read at every checkpoint of a model. So the noise of a trajectory is
correlated across checkpoints, and the truth a 95 % interval should cover is the
value the statistic would take with infinitely many prompts.

``replicate_trajectories`` makes replicate trajectories in the two ways the data
allow, per metric:

- ``prompt bootstrap`` (the workflow's own results, which keep per-prompt values,
  see docs/ARCHITECTURE.md "per_prompt"): per replicate and seed, one
  multinomial resample of that seed's prompt indices, applied at *every*
  checkpoint (so the cross-checkpoint correlation is kept); the metric is
  sum(num) / sum(den) over the resampled prompts of each seed, averaged over
  seeds. Metrics of one probe share the resample (they are read from the same
  prompts).
- ``parametric`` (tables without per-prompt values): each checkpoint drawn
  from Normal(mean, se) where se = (ci_hi - ci_lo) / (2 x 1.96)
  when the table has the per-checkpoint 95 % interval columns, else from
  mean + se x t(dof) with se^2 = pooled std^2 / (n_seeds - 1) (the squared
  standard error of a mean of n_seeds values whose population std, ddof = 0,
  is std), the std's variance pooled over up to two neighbouring checkpoints on
  either side (``parametric_scale``). The table does not say how its
  checkpoints' noise is correlated: crossings are drawn with a common
  component whose weight is drawn per replicate, contrasts independently
  (``correlated_t``). The coverage table in
  docs/metrics.md ("Coverage") gives what each path achieves.

``interval`` turns replicate values of a statistic into an interval: the
percentile interval, or the *basic* (reflected) one 2 x estimate - quantiles,
which removes a bias of the kind a maximum over checkpoints has; the bias
estimate (mean of the replicates minus the estimate) is reported either way.
Both are deterministic in ``seed``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import stats as sps

Z975 = float(sps.norm.ppf(0.975))


def _prompt_weights(rng: np.random.Generator, n_boot: int, n_seeds: int, n_prompts: int) -> np.ndarray:
    """(B, S, P) multinomial resample counts: each (replicate, seed) row sums to P."""
    return rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=(n_boot, n_seeds)).astype(float)


def prompt_replicates(num: np.ndarray, den: np.ndarray | None, weights: np.ndarray) -> np.ndarray:
    """Replicate per-checkpoint values from per-prompt values.

    num, den: (C, S, P) per checkpoint, seed and prompt (den None: all ones; NaN
    entries mark a checkpoint without values); weights: (B, S, P) resample
    counts. Returns (B, C): mean over seeds of sum_p w num / sum_p w den (seeds
    whose value is undefined left out).
    """
    num = np.asarray(num, dtype=float)
    top = np.einsum("bsp,csp->bcs", weights, np.nan_to_num(num))
    if den is None:
        bottom = weights.sum(-1)[:, None, :]
    else:
        bottom = np.einsum("bsp,csp->bcs", weights, np.nan_to_num(np.asarray(den, dtype=float)))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = np.where(bottom > 0, top / bottom, np.nan)
    bad = ~np.isfinite(num).all(axis=-1)  # (C, S): a seed without values at that checkpoint
    per_seed = np.where(bad[None], np.nan, per_seed)
    with np.errstate(invalid="ignore"):
        cnt = np.isfinite(per_seed).sum(-1)
        return np.where(cnt > 0, np.nansum(per_seed, -1) / np.maximum(cnt, 1), np.nan)


POOL = 2  # the seed variance is pooled over this many checkpoints on either side


def parametric_scale(mean, std=None, ci=None, n_seeds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(se (C,), dof (C,)) of each checkpoint's mean: from the interval columns (dof inf)
    where finite, else from the std over seeds, its variance pooled over the
    checkpoint and up to ``POOL`` neighbours on either side that have one (k of
    them: dof k x (n_seeds - 1); three seeds alone give a std too noisy to draw
    from); se 0 where neither."""
    mu = np.asarray(mean, dtype=float)
    se, dof = np.zeros(mu.shape), np.full(mu.shape, np.inf)
    if std is not None and n_seeds >= 2:
        sd = np.asarray(std, dtype=float)
        ok = np.isfinite(sd) & (sd > 0)
        var = np.where(ok, sd * sd, 0.0)
        for c in np.flatnonzero(ok):
            win = slice(max(0, c - POOL), c + POOL + 1)
            k = int(ok[win].sum())
            se[c] = np.sqrt(var[win].sum() / k / (n_seeds - 1))
            dof[c] = (n_seeds - 1) * k
    if ci is not None:
        lo, hi = (np.asarray(a, dtype=float) for a in ci)
        ok = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
        se[ok] = (hi[ok] - lo[ok]) / (2 * Z975)
        dof[ok] = np.inf
    return se, dof


def correlated_t(rng: np.random.Generator, n_boot: int, dof: np.ndarray, correlated: bool = True) -> np.ndarray:
    """(B, C) standardised draws, t(dof_c) (normal where dof is inf) at each checkpoint,
    sharing a common component of weight sqrt(rho) with rho ~ Uniform(0, 1) per
    replicate (``correlated``), or independent (rho = 0).

    A table does not say how the noise of its checkpoints is correlated (the
    workflow's is positively: one prompt set is read at every checkpoint), and
    statistics differ in which correlation widens them: a positive one moves a
    level crossing with the whole curve, while it cancels in a contrast of
    checkpoints (a maximum against the rest, a ratio of two). So crossings are
    drawn averaging over the unknown correlation and contrasts independently
    (``CONTRASTS`` in icl_probe.stats.model). Each column keeps its marginal
    t(dof) distribution.
    """
    dof = np.asarray(dof, dtype=float)
    rho = rng.uniform(0.0, 1.0, size=(n_boot, 1)) if correlated else np.zeros((n_boot, 1))
    z = np.sqrt(rho) * rng.standard_normal((n_boot, 1)) + np.sqrt(1 - rho) * rng.standard_normal((n_boot, dof.size))
    finite = np.isfinite(dof)
    if finite.any():
        d = np.where(finite, dof, 1.0)
        w = rng.chisquare(d, size=(n_boot, dof.size)) / d
        z = np.where(finite, z / np.sqrt(w), z)
    return z


def replicate_trajectories(
    means: Mapping[str, np.ndarray],
    stds: Mapping[str, np.ndarray] | None = None,
    cis: Mapping[str, tuple] | None = None,
    samples: Mapping[str, dict] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    n_seeds: int = 3,
    correlated: bool = True,
) -> tuple[dict, dict]:
    """Replicate trajectories of every metric that has a spread.

    means: name -> (C,) per-checkpoint means; stds: name -> (C,) population std
    over seeds; cis: name -> ((C,) lo, (C,) hi) per-checkpoint 95 % intervals;
    samples: name -> {"num": (C, S, P), "den": (C, S, P) or None, "group": str}
    per-prompt values (NaN rows where a checkpoint has none); correlated: the
    parametric draws share a common component (``correlated_t``). Returns (reps:
    name -> (B, C), method: name -> "prompt bootstrap" | "parametric" |
    "prompt bootstrap + parametric" (checkpoints without per-prompt values));
    metrics without any spread are left out (they stay at their means).
    """
    n_boot = int(n_boot)
    stds, cis, samples = stds or {}, cis or {}, samples or {}
    reps, method = {}, {}
    if n_boot <= 0:
        return reps, method
    rng = np.random.default_rng(seed)
    weights: dict[tuple, np.ndarray] = {}
    for name in sorted(means):
        mu = np.asarray(means[name], dtype=float)
        rep = np.tile(mu, (n_boot, 1))
        used = []
        have = np.zeros(mu.shape, dtype=bool)
        smp = samples.get(name)
        if smp is not None:
            num = np.asarray(smp["num"], dtype=float)
            key = (smp.get("group", name),) + num.shape[1:]
            if key not in weights:
                weights[key] = _prompt_weights(rng, n_boot, num.shape[1], num.shape[2])
            r = prompt_replicates(num, smp.get("den"), weights[key])
            have = np.isfinite(r).all(axis=0) & np.isfinite(mu)
            rep[:, have] = r[:, have]
            if have.any():
                used.append("prompt bootstrap")
        se, dof = parametric_scale(mu, stds.get(name), cis.get(name), n_seeds)
        fill = ~have & (se > 0) & np.isfinite(mu)
        if fill.any():
            rep[:, fill] = mu[fill] + correlated_t(rng, n_boot, dof, correlated)[:, fill] * se[fill]
            used.append("parametric")
        if used:
            reps[name], method[name] = rep, " + ".join(used)
    return reps, method


def interval(estimate: float | None, draws, kind: str = "percentile", min_defined: float = 0.5) -> dict:
    """A 95 % interval from replicate values of one statistic.

    estimate: the statistic on the data (None: undefined); draws: (B,) replicate
    values (NaN = undefined in that replicate); kind: "percentile" (the 2.5 and
    97.5 percentiles) or "basic" (2 x estimate minus the 97.5 and 2.5
    percentiles) or "bc" (bias-corrected percentile: the quantiles shifted by
    z0 = Phi^-1(share of replicates below the estimate, ties counted half)). Returns {"ci": [lo, hi] or None, "bias": mean(draws) -
    estimate, "defined_frac", "method", "note"}; no interval when the estimate
    is undefined or fewer than ``min_defined`` of the replicates define it.
    """
    v = np.asarray(draws, dtype=float)
    ok = np.isfinite(v)
    frac = float(ok.mean()) if v.size else 0.0
    out = {"ci": None, "bias": None, "defined_frac": frac, "method": kind, "note": None}
    if estimate is None or not np.isfinite(estimate):
        out["note"] = "the statistic is undefined"
        return out
    if frac < min_defined:
        out["note"] = f"defined in only {frac:.0%} of the replicates: no interval"
        return out
    q_lo, q_hi = np.percentile(v[ok], [2.5, 97.5])
    out["bias"] = float(v[ok].mean() - estimate)
    if kind == "basic":
        out["ci"] = [float(2 * estimate - q_hi), float(2 * estimate - q_lo)]
    elif kind == "bc":
        w = v[ok]
        p0 = float(np.mean(w < estimate) + 0.5 * np.mean(w == estimate))
        z0 = float(sps.norm.ppf(min(max(p0, 1e-3), 1 - 1e-3)))
        a_lo, a_hi = sps.norm.cdf([2 * z0 - Z975, 2 * z0 + Z975])
        out["ci"] = [float(np.percentile(w, 100 * a_lo)), float(np.percentile(w, 100 * a_hi))]
    elif kind == "percentile":
        out["ci"] = [float(q_lo), float(q_hi)]
    else:
        raise ValueError(f"unknown interval kind {kind!r}")
    if frac < 0.95:
        out["note"] = f"defined in {frac:.0%} of the replicates; the interval is over those"
    return out
