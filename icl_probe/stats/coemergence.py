"""Attention sinks next to the GD readout: late/early sink trajectory and co-emergence lag.

Inputs are trajectories (n,) ordered by step. Steps in, steps out; the lag is in
decades (log10 step).
"""

from __future__ import annotations

import math

import numpy as np

from icl_probe.stats.emergence import _check, _interp_step


def half_rise(steps, ratio) -> dict:
    """Where the sink late/early ratio first reaches half its rise.

    The rise is max(ratio) - ratio[0] (ratio: (n,) dimensionless, mean sink_frac
    of the late layers over the early ones); the level is ratio[0] + rise / 2.
    Returns {"first": step of the first checkpoint at or above the level,
    "interpolated": log10(step)-interpolated step, "level", "rise", "bracket"};
    steps are None when the ratio does not rise, and the interpolated one when
    the bracket starts at step 0 (``note`` says so).
    """
    s, r = _check(steps, ratio)
    out = {"first": None, "interpolated": None, "level": None, "rise": None, "bracket": None}
    if r.size == 0 or not np.isfinite(r[0]) or not np.isfinite(r).any():
        return out
    rise = float(np.nanmax(r) - r[0])
    out["rise"] = rise
    if rise <= 0:
        return out
    level = float(r[0] + 0.5 * rise)
    i = int(np.flatnonzero(np.isfinite(r) & (r >= level))[0])
    out.update(level=level, first=float(s[i]), bracket=[float(s[i - 1]), float(s[i])])
    if s[i - 1] <= 0:
        out["note"] = "the bracket starts at step 0: no interpolated value"
    else:
        out["interpolated"] = _interp_step(s, i - 1, i, r[i - 1], r[i], level)
    return out


def sink_trajectory(steps, ratio) -> dict:
    """Initial, final and maximum late/early ratio (and the max's step), plus ``half_rise``."""
    s, r = _check(steps, ratio)
    out = {"initial": None, "final": None, "max": None, "max_step": None}
    if np.isfinite(r).any():
        i = int(np.nanargmax(r))
        out.update(initial=float(r[0]) if np.isfinite(r[0]) else None,
                   final=float(r[-1]) if np.isfinite(r[-1]) else None,
                   max=float(r[i]), max_step=float(s[i]))
    out["half_rise"] = half_rise(s, r)
    return out


def co_emergence_lag(sink_half_rise_step: float | None, er_zero_crossing_step: float | None) -> float | None:
    """log10(sink half-rise step) - log10(ER zero crossing step), in decades.

    Negative: the sinks rise before the readout crosses zero. None when either
    step is undefined or not positive (log10 of step 0 is undefined).
    """
    a, b = sink_half_rise_step, er_zero_crossing_step
    if a is None or b is None or not (a > 0 and b > 0):
        return None
    return math.log10(a) - math.log10(b)
