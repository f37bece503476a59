"""The checkpoint axis: a log10 step (or token) coordinate in which step 0 has a place.

Statistics that interpolate "in log10(step)" and figures drawn on a log axis
both need a value for step 0, where log10 is undefined. The convention used
everywhere in this package: step 0 sits one decade to the left of the smallest
positive step of the trajectory (the *left edge*). A trajectory with steps
0, 1, 2, 4 ... puts step 0 at log10 = -1; one with 0, 1000, 2000 at log10 = 2.
An interpolated value that falls between the left edge and the first positive
step is mapped back with 10**x (so it lies between s_min/10 and s_min); a value
exactly on the left edge maps back to 0.
"""

from __future__ import annotations

import numpy as np


def left_edge(steps) -> float:
    """The stand-in for step 0 on a log axis: a tenth of the smallest positive step.

    steps: (n,) non-negative steps (or tokens). Returns a positive float; 1.0 if
    no step is positive.
    """
    s = np.asarray(steps, dtype=float)
    pos = s[np.isfinite(s) & (s > 0)]
    return float(pos.min()) / 10.0 if pos.size else 1.0


def log_step(steps, edge: float | None = None) -> np.ndarray:
    """log10 of each step, with step 0 placed at log10(edge) (default ``left_edge``).

    steps: (n,) non-negative. Returns (n,) float. Negative steps are an error.
    """
    s = np.asarray(steps, dtype=float)
    if np.any(s < 0):
        raise ValueError(f"steps must be non-negative, got {s[s < 0][:3].tolist()}")
    edge = left_edge(s) if edge is None else edge
    return np.log10(np.where(s > 0, s, edge))


def step_from_log(x: float, edge: float) -> float:
    """Inverse of ``log_step`` for one value: 10**x, or 0.0 on (or left of) the edge."""
    if not np.isfinite(x):
        return float("nan")
    if x <= np.log10(edge) + 1e-12:
        return 0.0
    return float(10.0 ** x)


def plot_positions(steps, edge: float | None = None) -> np.ndarray:
    """x positions for a log-scaled axis: the steps, with 0 replaced by the left edge."""
    s = np.asarray(steps, dtype=float)
    edge = left_edge(s) if edge is None else edge
    return np.where(s > 0, s, edge)
