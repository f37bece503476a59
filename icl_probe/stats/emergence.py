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

    The interpolated value is the crossing of 0.5 * peak_er on the segment between
    the previous checkpoint and the first one at or above it; when that first one
    is the first checkpoint it is that checkpoint's step. Undefined (None) when
    peak_er <= 0. Returns {"first": step, "interpolated": step, "level": digits}.
    """
    s, v = _check(steps, er)
    pk = peak(s, v)["peak_er"]
    if pk is None or pk <= 0:
        return {"first": None, "interpolated": None, "level": None}
    level = 0.5 * pk
    above = np.flatnonzero(np.isfinite(v) & (v >= level))
    i = int(above[0])
    if i == 0:
        interp = float(s[0])
    else:
        interp = _interp_step(s, i - 1, i, v[i - 1], v[i], level)
    return {"first": float(s[i]), "interpolated": interp, "level": level}


def zero_crossing(steps, er) -> dict:
    """The first upward zero crossing of ER after its minimum.

    Only defined when the minimum ER is < 0: from the checkpoint of the minimum
    on, the first consecutive pair (i, i+1) with ER[i] < 0 and ER[i+1] >= 0.
    Returns {"bracket": [step_i, step_i1], "interpolated": step} (linear in
    log10(step)), or both None.
    """
    s, v = _check(steps, er)
    none = {"bracket": None, "interpolated": None}
    if not np.isfinite(v).any():
        return none
    i_min = int(np.nanargmin(v))
    if not v[i_min] < 0:
        return none
    for i in range(i_min, len(v) - 1):
        if v[i] < 0 and v[i + 1] >= 0:
            return {"bracket": [float(s[i]), float(s[i + 1])],
                    "interpolated": _interp_step(s, i, i + 1, v[i], v[i + 1], 0.0)}
    return none


def phase_tau(er_std, tau_min: float = 0.1) -> float:
    """The noise level of the phase rule: max(tau_min, 2 x median ER_std) (digits).

    er_std: (n,) per-checkpoint std over seeds; NaN entries are ignored; with no
    finite std tau is tau_min.
    """
    sd = np.asarray(er_std, dtype=float)
    sd = sd[np.isfinite(sd)]
    return float(max(tau_min, 2.0 * np.median(sd))) if sd.size else float(tau_min)


def phases(steps, er, er_std=None, tau_min: float = 0.1) -> dict:
    """Plateau, valley and transition of an ER trajectory, and its label.

    - plateau: the leading checkpoints with abs(ER) <= tau (possibly none);
    - valley: min ER < -tau;
    - transition: an upward zero crossing after the minimum (``zero_crossing``)
      followed, at or after the bracket's upper step, by ER >= 0.5 * peak_er.

    Label: "three-phase" when there is a valley and a transition (the plateau's
    length is reported; ``note`` says when it is empty); "emergence without
    valley" when there is no valley and peak_er > tau; otherwise "no emergence"
    (including a valley that never recovers).
    """
    s, v = _check(steps, er)
    tau = phase_tau([] if er_std is None else er_std, tau_min)
    n_plateau = 0
    for val in v:
        if np.isfinite(val) and abs(val) <= tau:
            n_plateau += 1
        else:
            break
    pk = peak(s, v)
    finite = np.isfinite(v).any()
    i_min = int(np.nanargmin(v)) if finite else None
    valley = bool(finite and v[i_min] < -tau)
    zc = zero_crossing(s, v)
    transition = False
    if zc["bracket"] is not None and pk["peak_er"] is not None and pk["peak_er"] > 0:
        after = v[s >= zc["bracket"][1]]
        transition = bool(np.any(after >= 0.5 * pk["peak_er"]))
    if valley and transition:
        label = "three-phase"
    elif not valley and pk["peak_er"] is not None and pk["peak_er"] > tau:
        label = "emergence without valley"
    else:
        label = "no emergence"
    note = None
    if label == "three-phase" and n_plateau == 0:
        note = "no leading plateau: the first checkpoint already has abs(ER) > tau"
    return {
        "tau": tau,
        "plateau_n": n_plateau,
        "plateau_end_step": float(s[n_plateau - 1]) if n_plateau else None,
        "valley": valley,
        "valley_step": float(s[i_min]) if valley else None,
        "valley_er": float(v[i_min]) if valley else None,
        "transition": transition,
        "label": label,
        "note": note,
    }
