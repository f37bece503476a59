"""All per-model statistics across checkpoints, from one model's table.

``model_statistics(table, cfg, samples)`` orders the table's checkpoints by step
(one row per step, chosen without regard to row order), takes for every
statistic the checkpoints where its columns are measured, computes the point
values with the pure functions of ``emergence``, ``lifecycle``,
``contraction`` and ``coemergence``, 95 % intervals by resampling
(``icl_probe.stats.bootstrap``), and nulls, with the reason, what the data do
not support: too few checkpoints, a missing column, no emergence. Definitions:
docs/metrics.md ("Across training"). Nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from icl_probe.stats import coemergence, contraction, emergence, lifecycle
from icl_probe.stats.bootstrap import interval, replicate_trajectories
from icl_probe.stats.table import ID_COLUMNS

DEFAULTS = {
    "tau_min": 0.1,
    "er_decay_threshold": -0.15,
    "sa_decay_threshold": -0.10,
    "forecast_step": 4000,
    "forecast_tolerance": 0.25,
    "bootstrap": 1000,
    "seed": 0,
    "n_seeds": 3,
    "min_checkpoints": 3,
    "induction_rise_min": 0.1,
}

# How each bootstrapped statistic's interval is formed (bootstrap.interval): the
# maxima over checkpoints (peak_er and the decays relative to a maximum) are
# biased upward by noise, which the basic interval reflects away. Chosen by the
# coverage study, benchmarks/coverage.py (table in docs/metrics.md, "Coverage").
INTERVAL_KIND = {
    "peak_er": "basic",
    "er_decay": "bc",
    "sa_decay": "bc",
    "half_max_step_interp": "percentile",
    "zero_crossing_interp": "percentile",
    "sink_half_rise_step": "basic",
    "co_emergence_lag": "basic",
}

# Without per-prompt values, statistics whose replicates come from independent draws
# (bootstrap.correlated_t): sa_decay contrasts the final checkpoint with a maximum over a
# plateau of near-equal ones, where a shared shift cancels; the coverage study
# (docs/metrics.md, "Coverage") measured 86 % with the correlated draw, 94 % without.
CONTRASTS = ("sa_decay",)

# Statistics that presuppose emergence (null, with the reason, when the ER
# trajectory is labelled "no emergence"); the zero crossing also needs a valley.
NEEDS_EMERGENCE = ("half_max_step", "half_max_step_interp", "half_max_tokens", "half_max_tokens_interp",
                   "zero_crossing_lo", "zero_crossing_hi", "zero_crossing_interp", "zero_crossing_lo_tokens",
                   "zero_crossing_hi_tokens", "zero_crossing_interp_tokens", "er_decay", "sa_decay",
                   "lifecycle", "heldout_change", "co_emergence_lag")
NEEDS_VALLEY = ("zero_crossing_lo", "zero_crossing_hi", "zero_crossing_interp", "zero_crossing_lo_tokens",
                "zero_crossing_hi_tokens", "zero_crossing_interp_tokens", "co_emergence_lag")


def settings(cfg: dict | None) -> dict:
    """The ``stats`` config section over the defaults."""
    return {**DEFAULTS, **(cfg or {})}


@dataclass
class Trajectory:
    """One model's checkpoints, one per step, ordered by step.

    steps (n,); revisions (n,) str; tokens (n,) or None; means / stds: name ->
    (n,) (NaN where not measured); cis: name -> ((n,) lo, (n,) hi);
    duplicates: [{"step", "kept", "dropped"}] for steps that had several rows.
    """

    steps: np.ndarray
    revisions: np.ndarray
    tokens: np.ndarray | None
    means: dict
    stds: dict
    cis: dict
    duplicates: list = field(default_factory=list)


def _metric_base(col: str) -> tuple[str, str]:
    for suffix in ("_ci_lo", "_ci_hi", "_std"):
        if col.endswith(suffix):
            return col[: -len(suffix)], suffix
    return col, ""


def prepare(table: pd.DataFrame) -> Trajectory:
    """The table as a ``Trajectory``.

    A ``main`` row is dropped when another revision has its step (the documented
    alias of the final checkpoint). Rows are ordered by (step, revision, metric
    values), so the order of the input rows never matters; of several rows with
    one step the first in that order is kept and the others are listed in
    ``duplicates``.
    """
    t = table.reset_index(drop=True)
    if "revision" not in t:
        t = t.assign(revision=[f"step{s:g}" for s in t["step"]])
    t = t.assign(revision=t["revision"].astype(str))
    dup_main = (t["revision"] == "main") & t["step"].duplicated(keep=False)
    t = t[~dup_main]
    cols = [c for c in t.columns if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(t[c])]
    t = t.sort_values(["step", "revision"] + cols, kind="mergesort", na_position="last")
    duplicates = []
    dup = t["step"].duplicated(keep="first")
    for step in sorted(set(t.loc[dup, "step"])):
        revs = t.loc[t["step"] == step, "revision"].tolist()
        duplicates.append({"step": float(step), "kept": revs[0], "dropped": revs[1:]})
    t = t[~dup]
    steps = t["step"].to_numpy(dtype=float)
    tokens = t["tokens"].to_numpy(dtype=float) if "tokens" in t and t["tokens"].notna().any() else None
    if tokens is None and "tokens_B" in t and t["tokens_B"].notna().any():
        tokens = t["tokens_B"].to_numpy(dtype=float) * 1e9
    means, stds, lo, hi = {}, {}, {}, {}
    for col in cols:
        base, suffix = _metric_base(col)
        arr = t[col].to_numpy(dtype=float)
        {"": means, "_std": stds, "_ci_lo": lo, "_ci_hi": hi}[suffix][base] = arr
    if "rho_pred" not in means and "slope_alpha" in means:
        means["rho_pred"] = 1.0 - means["slope_alpha"]
    cis = {k: (lo[k], hi[k]) for k in lo if k in hi and k in means}
    return Trajectory(steps, t["revision"].to_numpy(dtype=str), tokens, means,
                      {k: v for k, v in stds.items() if k in means}, cis, duplicates)


def trajectory(table: pd.DataFrame) -> tuple[np.ndarray, dict, dict]:
    """(steps (n,), means name -> (n,), stds name -> (n,)) ordered by step (``prepare``)."""
    tr = prepare(table)
    return tr.steps, tr.means, tr.stds


def _finite(steps, *arrays):
    """The steps and arrays at the checkpoints where every array is finite."""
    ok = np.ones(len(steps), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(np.asarray(a, dtype=float))
    return (np.asarray(steps)[ok],) + tuple(np.asarray(a, dtype=float)[ok] for a in arrays)


def tokens_at(steps, tokens, step: float | None) -> float | None:
    """Tokens seen at ``step``: a checkpoint's own count, or between two checkpoints the
    count interpolated linearly in log10 (as the steps are); None without tokens, or
    below the first positive step."""
    if step is None or tokens is None:
        return None
    s, t = _finite(steps, tokens)
    if not s.size:
        return None
    hit = np.flatnonzero(s == step)
    if hit.size:
        return float(t[hit[0]])
    j = int(np.searchsorted(s, step))
    if j == 0 or j >= s.size or s[j - 1] <= 0 or t[j - 1] <= 0 or step <= 0:
        return None
    f = (np.log10(step) - np.log10(s[j - 1])) / (np.log10(s[j]) - np.log10(s[j - 1]))
    return float(10 ** (np.log10(t[j - 1]) + f * (np.log10(t[j]) - np.log10(t[j - 1]))))


def bootstrapped(steps, m: dict) -> dict:
    """The statistics that get an interval, computed without gating: name -> float or None.

    steps: (n,) ordered; m: name -> (n,) means (NaN where not measured). Used on
    the data and on every replicate trajectory.
    """
    out = {}
    if "error_reduction" in m:
        s, er = _finite(steps, m["error_reduction"])
        if s.size:
            out["peak_er"] = emergence.peak(s, er)["peak_er"]
            out["half_max_step_interp"] = emergence.half_max_step(s, er)["interpolated"]
            out["zero_crossing_interp"] = emergence.zero_crossing(s, er)["interpolated"]
            out["er_decay"] = lifecycle.er_decay(er)
    if "sign_agreement" in m:
        s, sa = _finite(steps, m["sign_agreement"])
        if s.size:
            out["sa_decay"] = lifecycle.sa_decay(sa)
    if "late_early_ratio" in m:
        s, r = _finite(steps, m["late_early_ratio"])
        if s.size:
            out["sink_half_rise_step"] = coemergence.half_rise(s, r)["interpolated"]
            if "error_reduction" in m:
                out["co_emergence_lag"] = coemergence.co_emergence_lag(out["sink_half_rise_step"],
                                                                       out.get("zero_crossing_interp"))
    return out


def _used(tr: Trajectory, cols) -> dict:
    """column -> {"n": checkpoints measured, "steps_missing": [...]} for the given columns."""
    out = {}
    for c in cols:
        if c in tr.means:
            ok = np.isfinite(tr.means[c])
            out[c] = {"n": int(ok.sum()), "steps_missing": tr.steps[~ok].tolist()}
    return out


def model_statistics(table: pd.DataFrame, cfg: dict | None = None, samples: dict | None = None) -> dict:
    """Every per-model statistic of docs/metrics.md ("Across training") for one model.

    table: one row per checkpoint (any order), at least ``step`` and the metric
    columns each statistic needs (``<name>``, optional ``<name>_std``,
    ``<name>_ci_lo``, ``<name>_ci_hi``, ``tokens``); cfg: the ``stats`` config
    section; samples: revision -> metric -> {"num", "den", "group"} per-prompt
    values (``icl_probe.stats.table.read_per_prompt``), which make the
    intervals a prompt bootstrap. Returns a JSON-ready dict: ``statistics``,
    ``intervals`` (name -> {"ci", "bias", "defined_frac", "method", "note"}),
    ``null`` (statistic -> why it is null), ``skipped`` (statistic -> missing
    column), ``checkpoints`` (per column: how many measured, which missing),
    ``duplicate_steps``.
    """
    cfg = settings(cfg)
    tr = prepare(table)
    n = int(len(tr.steps))
    base = {"n_checkpoints": n, "steps": tr.steps.tolist(), "duplicate_steps": tr.duplicates,
            "thresholds": {k: cfg[k] for k in ("tau_min", "er_decay_threshold", "sa_decay_threshold")}}
    if n < int(cfg["min_checkpoints"]):
        why = f"{n} checkpoint(s): statistics across training need at least {cfg['min_checkpoints']}"
        return {**base, "statistics": {}, "intervals": {}, "null": {"all": why}, "skipped": {"all": why},
                "checkpoints": {}}
    m = tr.means
    st: dict = {}
    null: dict = {}
    skipped: dict = {}

    min_n = int(cfg["min_checkpoints"])

    def need(name, *cols, any_of=False, trajectory=False):
        have = [c for c in cols if c in m and np.isfinite(m[c]).any()]
        ok = bool(have) if any_of else len(have) == len(cols)
        if not ok:
            missing = [c for c in cols if c not in have]
            skipped[name] = ("needs one of the columns " if any_of else "needs the column(s) ") + ", ".join(missing)
        elif trajectory:
            k = int(np.isfinite(m[cols[0]]).sum())
            if k < min_n:
                skipped[name] = f"{cols[0]} is measured at {k} checkpoint(s); a trajectory needs at least {min_n}"
                return False
        return ok

    # replicate trajectories: per-prompt values where the results kept them
    smp = _align_samples(tr, samples)
    reps, rep_method = replicate_trajectories(m, tr.stds, tr.cis, smp, n_boot=cfg["bootstrap"],
                                              seed=cfg["seed"], n_seeds=cfg["n_seeds"])
    point = bootstrapped(tr.steps, m)
    draws = _replicate_statistics(tr.steps, m, reps)
    if any("parametric" in v for v in rep_method.values()):
        # without per-prompt values: contrasts from independent draws (bootstrap.correlated_t)
        ind, _ = replicate_trajectories(m, tr.stds, tr.cis, smp, n_boot=cfg["bootstrap"],
                                        seed=cfg["seed"] + 1, n_seeds=cfg["n_seeds"], correlated=False)
        draws.update({k: v for k, v in _replicate_statistics(tr.steps, m, ind).items() if k in CONTRASTS})
    intervals = {key: interval(point.get(key), draws[key], INTERVAL_KIND.get(key, "percentile"))
                 for key in point if key in draws}

    emerging = valley = None
    if need("emergence", "error_reduction", trajectory=True):
        s, er = _finite(tr.steps, m["error_reduction"])
        er_ci = _checkpoint_ci(tr, "error_reduction", reps)
        st["error_reduction_ci"] = None if er_ci is None else {
            "steps": tr.steps.tolist(), "lo": _json_list(er_ci[0]), "hi": _json_list(er_ci[1])}
        ok = np.isfinite(m["error_reduction"])
        sd = tr.stds.get("error_reduction")
        if sd is None:
            skipped["phases.tau_from_std"] = "no error_reduction_std column: tau = tau_min"
        ph = emergence.phases(s, er, None if sd is None else sd[ok], cfg["tau_min"],
                              None if er_ci is None else (er_ci[0][ok], er_ci[1][ok]))
        st["phases"] = ph
        emerging, valley = ph["emerging"], ph["valley"]
        pk = emergence.peak(s, er)
        st["peak_er"], st["peak_step"] = pk["peak_er"], pk["peak_step"]
        st["peak_tokens"] = tokens_at(tr.steps, tr.tokens, pk["peak_step"])
        st["peak_revision"] = str(tr.revisions[ok][pk["peak_index"]])
        hm = emergence.half_max_step(s, er)
        st["half_max_step"], st["half_max_step_interp"] = hm["first"], hm["interpolated"]
        st["half_max_bracket"], st["half_max_level"] = hm["bracket"], hm["level"]
        st["half_max_tokens"] = tokens_at(tr.steps, tr.tokens, hm["first"])
        st["half_max_tokens_interp"] = tokens_at(tr.steps, tr.tokens, hm["interpolated"])
        if hm["note"] and hm["first"] is not None:
            null.setdefault("half_max_step_interp", hm["note"])
        zc = emergence.zero_crossing(s, er)
        lo_hi = zc["bracket"] or [None, None]
        st["zero_crossing_lo"], st["zero_crossing_hi"] = lo_hi
        st["zero_crossing_interp"] = zc["interpolated"]
        for k in ("lo", "hi", "interp"):
            st[f"zero_crossing_{k}_tokens"] = tokens_at(tr.steps, tr.tokens, st[f"zero_crossing_{k}"])
        if zc["note"]:
            null.setdefault("zero_crossing_interp", zc["note"])
        st["er_final"], st["er_final_step"] = float(er[-1]), float(s[-1])
        st["er_decay"] = lifecycle.er_decay(er)
        if need("heldout_change", *lifecycle.HELDOUT_METRICS, any_of=True):
            st["heldout_change"] = lifecycle.heldout_change(tr.steps, pk["peak_step"], m, tr.revisions)
    if need("sa_decay", "sign_agreement", trajectory=True):
        s, sa = _finite(tr.steps, m["sign_agreement"])
        st["sa_decay"] = lifecycle.sa_decay(sa)
        st["sa_max"], st["sa_final"], st["sa_final_step"] = float(sa.max()), float(sa[-1]), float(s[-1])
    if "er_decay" in st or "sa_decay" in st:
        ci = lambda k: (intervals.get(k) or {}).get("ci")  # noqa: E731
        st["lifecycle"] = lifecycle.lifecycle_label(st.get("er_decay"), st.get("sa_decay"),
                                                    cfg["er_decay_threshold"], cfg["sa_decay_threshold"],
                                                    ci("er_decay"), ci("sa_decay"))
    if need("rate_agreement", "rho_pred", "rho_obs"):
        st["rate_agreement"] = contraction.rate_agreement(m["rho_pred"], m["rho_obs"], m.get("rate_rel_error"))
    if need("contraction", "total_contraction", "rho2_per_layer", "geometric_fit_r2", any_of=True):
        st["contraction"] = contraction.contraction_summary(
            tr.steps, m.get("total_contraction"), m.get("rho2_per_layer"), m.get("geometric_fit_r2"))
    if need("sinks", "late_early_ratio", trajectory=True):
        s, r = _finite(tr.steps, m["late_early_ratio"])
        st["sinks"] = coemergence.sink_trajectory(s, r)
        st["sink_half_rise_step"] = st["sinks"]["half_rise"]["interpolated"]
        if "phases" in st:
            st["co_emergence_lag"] = coemergence.co_emergence_lag(st["sink_half_rise_step"],
                                                                  st.get("zero_crossing_interp"))

    if need("induction_transition", "induction_acc", trajectory=True):
        s, acc = _finite(tr.steps, m["induction_acc"])
        sd = tr.stds.get("induction_acc")
        it = induction_transition(s, acc, None if sd is None else sd[np.isfinite(m["induction_acc"])],
                                  cfg["induction_rise_min"])
        st["induction_transition"] = it
        st["induction_transition_step"] = it["interpolated"] if it["defined"] else None
        if not it["defined"] or it["interpolated"] is None:
            null["induction_transition_step"] = it["note"]

    # gating: what presupposes emergence (and a valley) is null otherwise
    if emerging is False:
        why = f"no emergence ({st['phases']['label']}: {st['phases']['note'] or 'see phases'})"
        for key in NEEDS_EMERGENCE:
            if key in st:
                st[key] = None
                null[key] = why
    elif emerging and not valley:
        for key in NEEDS_VALLEY:
            if key in st:
                st[key] = None
                null[key] = "no valley: " + (st["phases"]["note"] or "min ER >= -tau_min")
    for key in list(intervals):
        if key in st and st[key] is None:
            intervals[key] = {**intervals[key], "ci": None, "note": null.get(key, "the statistic is null")}
    if "peak_er" in intervals and intervals["peak_er"]["bias"] is not None:
        st["peak_er_bias"] = intervals["peak_er"]["bias"]
    cols = ["error_reduction", "sign_agreement", "late_early_ratio", *lifecycle.HELDOUT_METRICS]
    return {
        **base,
        "statistics": st,
        "intervals": intervals,
        "interval_sources": rep_method,
        "n_boot": int(cfg["bootstrap"]),
        "seed": int(cfg["seed"]),
        "null": null,
        "skipped": skipped,
        "checkpoints": _used(tr, cols),
    }


def induction_transition(steps, acc, acc_std=None, rise_min: float = 0.1) -> dict:
    """When induction appears: the half rise of ``induction_acc`` (``coemergence.half_rise``:
    the first checkpoint at or above acc[0] + (max acc - acc[0]) / 2, its bracket and the
    log10(step)-interpolated step), defined only when the rise exceeds its noise,
    threshold = max(rise_min, 2 x median induction_acc_std). No interval (a point statistic).
    Returns half_rise's fields plus ``threshold``, ``defined`` and ``note``.
    """
    sd = np.asarray([] if acc_std is None else acc_std, dtype=float)
    sd = sd[np.isfinite(sd)]
    threshold = float(max(rise_min, 2.0 * np.median(sd))) if sd.size else float(rise_min)
    hr = coemergence.half_rise(steps, acc)
    out = {"note": None, **hr, "threshold": threshold}
    rise = hr["rise"]
    out["defined"] = bool(rise is not None and rise > threshold)
    if not out["defined"]:
        out.update(first=None, interpolated=None, bracket=None, level=None,
                   note=f"no induction transition: induction_acc rises by "
                        f"{float('nan') if rise is None else rise:.3g} <= {threshold:.3g}")
    return out


def _replicate_statistics(steps, m: dict, reps: dict) -> dict[str, list]:
    """name -> [value per replicate] of ``bootstrapped`` over replicate trajectories."""
    draws: dict[str, list] = {}
    if not reps:
        return draws
    n = next(iter(reps.values())).shape[0]
    for b in range(n):
        rep = {k: (reps[k][b] if k in reps else v) for k, v in m.items()}
        for key, val in bootstrapped(steps, rep).items():
            draws.setdefault(key, []).append(np.nan if val is None else float(val))
    return draws


def _json_list(a) -> list:
    return [float(x) if np.isfinite(x) else None for x in np.asarray(a, dtype=float)]


def _checkpoint_ci(tr: Trajectory, name: str, reps: dict):
    """Per-checkpoint 95 % interval of a metric: percentiles of its replicates, else the
    table's interval columns; None when neither exists."""
    if name in reps:
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanpercentile(reps[name], [2.5, 97.5], axis=0)
        mu = tr.means[name]
        spread = np.nanmax(reps[name], axis=0) > np.nanmin(reps[name], axis=0)
        return np.where(spread & np.isfinite(mu), lo, np.nan), np.where(spread & np.isfinite(mu), hi, np.nan)
    if name in tr.cis:
        return tr.cis[name]
    return None


def _align_samples(tr: Trajectory, samples: dict | None) -> dict:
    """revision -> metric -> {"num", "den", "group"} into metric -> {"num": (C, S, P), ...}
    aligned with ``tr``'s rows (NaN rows where a checkpoint has none); a metric whose
    shapes differ between checkpoints is left out (its intervals fall back to the
    parametric draw)."""
    if not samples:
        return {}
    names = sorted({k for per in samples.values() for k in per})
    out = {}
    for name in names:
        shapes = {np.shape(samples[r][name]["num"]) for r in tr.revisions if name in samples.get(r, {})}
        if len(shapes) != 1:
            continue
        shape = shapes.pop()
        if len(shape) != 2:
            continue
        num = np.full((len(tr.revisions),) + shape, np.nan)
        den = None
        group = None
        for i, r in enumerate(tr.revisions):
            rec = samples.get(r, {}).get(name)
            if rec is None:
                continue
            num[i] = np.asarray(rec["num"], dtype=float)
            group = rec.get("group", group)
            if rec.get("den") is not None:
                if den is None:
                    den = np.full_like(num, np.nan)
                den[i] = np.asarray(rec["den"], dtype=float)
        if den is not None:
            den = np.where(np.isnan(den) & np.isfinite(num), 1.0, den)
        out[name] = {"num": num, "den": den, "group": group or name}
    return out
