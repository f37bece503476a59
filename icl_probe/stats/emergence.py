"""Emergence of the GD readout across training: peak, half-max, zero crossing, phases.

All functions take a trajectory ordered by step: ``steps`` (n,) non-negative
training steps and ``er`` (n,) error reduction in digits (ER = mean_err_embed -
mean_err_final). Undefined results are ``None`` (never NaN in the output dicts).
Interpolation "in log10(step)" uses ``icl_probe.stats.axis.log_step``: step 0
sits one decade left of the smallest positive step.
"""

from __future__ import annotations

import numpy as np

from icl_probe.stats.axis import left_edge, log_step, step_from_log


def _check(steps, values):
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError(f"steps {s.shape} and values {v.shape} must be equal 1-d shapes")
    if s.size and np.any(np.diff(s) < 0):
        raise ValueError("steps must be ordered (ascending)")
    return s, v


def _interp_step(steps, i_lo: int, i_hi: int, v_lo: float, v_hi: float, level: float) -> float:
    """Step where the line from (x_lo, v_lo) to (x_hi, v_hi) in log10(step) reaches ``level``."""
    edge = left_edge(steps)
    x = log_step(steps, edge)
    if v_hi == v_lo:
        return float(steps[i_hi])
    frac = (level - v_lo) / (v_hi - v_lo)
    return step_from_log(x[i_lo] + frac * (x[i_hi] - x[i_lo]), edge)


def peak(steps, er) -> dict:
    """Peak ER and the first checkpoint attaining it.

    Returns {"peak_er": float (digits), "peak_step": float, "peak_index": int},
    all None when no ER is finite.
    """
    s, v = _check(steps, er)
    if not np.isfinite(v).any():
        return {"peak_er": None, "peak_step": None, "peak_index": None}
    i = int(np.nanargmax(v))  # first index of the maximum
    return {"peak_er": float(v[i]), "peak_step": float(s[i]), "peak_index": i}


def half_max_step(steps, er) -> dict:
    """First checkpoint with ER >= 0.5 * peak_er, and the log10(step)-interpolated step.

    The interpolated value is the crossing of 0.5 * peak_er on the segment (the
    *bracket*) between the previous checkpoint and the first one at or above it.
    It is None, with a ``note``, when there is no bracket (the first checkpoint
    is already at or above the level) or the bracket starts at step 0 (where
    log10 is undefined, any interpolated value would depend on a convention).
    Undefined (all None) when peak_er <= 0.
    Returns {"first": step, "interpolated": step, "level": digits, "bracket": [lo, hi], "note"}.
    """
    s, v = _check(steps, er)
    none = {"first": None, "interpolated": None, "level": None, "bracket": None, "note": None}
    pk = peak(s, v)["peak_er"]
    if pk is None or pk <= 0:
        return {**none, "note": "peak_er <= 0"}
    level = 0.5 * pk
    above = np.flatnonzero(np.isfinite(v) & (v >= level))
    i = int(above[0])
    out = {**none, "first": float(s[i]), "level": level}
    if i == 0:
        out["note"] = "at or above half max at the first checkpoint: no bracket"
        return out
    out["bracket"] = [float(s[i - 1]), float(s[i])]
    if s[i - 1] <= 0:
        out["note"] = "the bracket starts at step 0: no interpolated value"
        return out
    out["interpolated"] = _interp_step(s, i - 1, i, v[i - 1], v[i], level)
    return out


def zero_crossing(steps, er) -> dict:
    """The first upward zero crossing of ER after its minimum.

    Only looked for when the minimum ER is < 0 (whether that minimum is a real
    valley is ``valley``'s question): from the checkpoint of the minimum on, the
    first consecutive pair (i, i+1) with ER[i] < 0 and ER[i+1] >= 0. Returns
    {"bracket": [step_i, step_i1], "interpolated": step (linear in log10(step)),
    "note"}; a bracket that starts at step 0 has no interpolated value.
    """
    s, v = _check(steps, er)
    none = {"bracket": None, "interpolated": None, "note": None}
    if not np.isfinite(v).any():
        return {**none, "note": "no finite ER"}
    i_min = int(np.nanargmin(v))
    if not v[i_min] < 0:
        return {**none, "note": "ER never below 0"}
    for i in range(i_min, len(v) - 1):
        if v[i] < 0 and v[i + 1] >= 0:
            out = {**none, "bracket": [float(s[i]), float(s[i + 1])]}
            if s[i] <= 0:
                out["note"] = "the bracket starts at step 0: no interpolated value"
            else:
                out["interpolated"] = _interp_step(s, i, i + 1, v[i], v[i + 1], 0.0)
            return out
    return {**none, "note": "ER does not recover to >= 0 after its minimum"}


def phase_tau(er_std, tau_min: float = 0.1) -> float:
    """The noise level of the phase rule: max(tau_min, 2 x median ER_std) (digits).

    er_std: (n,) per-checkpoint std over seeds; NaN entries are ignored; with no
    finite std tau is tau_min.
    """
    sd = np.asarray(er_std, dtype=float)
    sd = sd[np.isfinite(sd)]
    return float(max(tau_min, 2.0 * np.median(sd))) if sd.size else float(tau_min)


def phases(steps, er, er_std=None, tau_min: float = 0.1, er_ci=None) -> dict:
    """Plateau, valley and transition of an ER trajectory, and its label.

    steps, er: (n,) ordered, finite; er_std: (n,) std over seeds (sets tau);
    er_ci: optional ((n,) lo, (n,) hi) 95 % intervals of each checkpoint's ER.

    - tau = max(tau_min, 2 x median ER_std) (``phase_tau``);
    - plateau: the leading checkpoints with abs(ER) <= tau (possibly none);
    - valley, practically and statistically real: min ER < -tau_min and at
      least one checkpoint up to the zero crossing (the whole trajectory when
      there is none) whose interval lies entirely below 0;
    - real rise: peak_er > tau and at least one checkpoint whose interval lies
      entirely above tau;
    - transition: a real valley, an upward zero crossing after the minimum
      (``zero_crossing``) and, at or after the bracket's upper step, ER >= 0.5 *
      peak_er, with a real rise.

    Without intervals (``er_ci`` None) only the practical conditions are
    checked, and ``evidence`` says so. Label: "three-phase" (valley and
    transition); "emergence without valley" (no valley, a real rise); otherwise
    "no emergence" (a valley that never recovers included). ``emerging`` is
    True for the first two.
    """
    s, v = _check(steps, er)
    tau = phase_tau([] if er_std is None else er_std, tau_min)
    lo = hi = None
    if er_ci is not None:
        lo, hi = (np.asarray(a, dtype=float) for a in er_ci)
        if lo.shape != v.shape or hi.shape != v.shape:
            raise ValueError(f"er_ci shapes {lo.shape}, {hi.shape} do not match er {v.shape}")
    n_plateau = 0
    for val in v:
        if np.isfinite(val) and abs(val) <= tau:
            n_plateau += 1
        else:
            break
    pk = peak(s, v)
    finite = np.isfinite(v).any()
    i_min = int(np.nanargmin(v)) if finite else None
    zc = zero_crossing(s, v)
    dip = bool(finite and v[i_min] < -tau_min)
    if zc["bracket"] is not None:
        before = s <= zc["bracket"][0]
    else:
        before = np.ones(v.shape, dtype=bool)
    dip_sure = True if hi is None else bool(np.any(before & np.isfinite(hi) & (hi < 0)))
    valley = dip and dip_sure
    rise = pk["peak_er"] is not None and pk["peak_er"] > tau
    rise_sure = True if lo is None else bool(np.any(np.isfinite(lo) & (lo > tau)))
    real_rise = bool(rise and rise_sure)
    transition = False
    if valley and real_rise and zc["bracket"] is not None:
        after = v[s >= zc["bracket"][1]]
        transition = bool(np.any(after >= 0.5 * pk["peak_er"]))
    if valley and transition:
        label = "three-phase"
    elif not valley and real_rise:
        label = "emergence without valley"
    else:
        label = "no emergence"
    notes = []
    if label == "three-phase" and n_plateau == 0:
        notes.append("no leading plateau: the first checkpoint already has abs(ER) > tau")
    if dip and not dip_sure:
        notes.append(f"a dip to {v[i_min]:.3g} but no checkpoint before the crossing with its 95 % interval "
                     "below 0: not a valley")
    if rise and not rise_sure:
        notes.append(f"peak_er {pk['peak_er']:.3g} > tau but no checkpoint with its 95 % interval above tau")
    if label == "no emergence" and not rise:
        notes.append(f"peak_er {pk['peak_er'] if pk['peak_er'] is not None else float('nan'):.3g} "
                     f"<= tau = {tau:.3g}")
    return {
        "tau": tau,
        "tau_min": float(tau_min),
        "evidence": "magnitude only (no per-checkpoint intervals)" if er_ci is None else
                    "magnitude and 95 % intervals",
        "plateau_n": n_plateau,
        "plateau_end_step": float(s[n_plateau - 1]) if n_plateau else None,
        "valley": valley,
        "valley_step": float(s[i_min]) if valley else None,
        "valley_er": float(v[i_min]) if valley else None,
        "transition": transition,
        "label": label,
        "emerging": label != "no emergence",
        "note": "; ".join(notes) or None,
    }
