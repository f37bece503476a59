"""Attention sinks: how much attention lands on the first token, per head and layer.

Pure functions of arrays (see docs/metrics.md, "Attention sinks").
"""

from __future__ import annotations

import math

import numpy as np

SCALARS = ("sink_rate_eps", "late_early_ratio")
PER_LAYER = ("sink_frac",)
PER_HEAD = ("alpha",)
PROMPT_AXES = {"alpha": 2}


def first_token_attention(attn: np.ndarray) -> np.ndarray:
    """alpha per head and sequence: mean over queries t = 1..T-1 of the weight on position 0.

    ``attn [S, H, T, T]`` (one layer) -> ``[H, S]``.
    """
    a = np.asarray(attn)
    return a[:, :, 1:, 0].mean(axis=-1).T


def sink_metrics(alpha: np.ndarray, eps: float = 0.3) -> dict:
    """Every attention-sink row of the spec for one seed.

    alpha ``[L, H, S]``: per layer (block 1..L), head and sequence, the mean over
    t = 1..T-1 of the attention on position 0. Returns alpha ``[L, H]``, sink_frac
    ``[L]``, sink_rate_eps (percent of (layer, head) with alpha > eps) and
    late_early_ratio (mean sink_frac over the last ceil(L/3) layers over the first).
    """
    a = np.asarray(alpha, dtype=np.float64).mean(axis=-1)
    sink_frac = a.mean(axis=1)
    n = math.ceil(a.shape[0] / 3)
    early = sink_frac[:n].mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(sink_frac[-n:].mean() / early)
    return {
        "alpha": a,
        "sink_frac": sink_frac,
        "sink_rate_eps": float(100.0 * np.mean(a > eps)),
        "late_early_ratio": ratio,
    }


def per_prompt(alpha: np.ndarray, eps: float = 0.3) -> dict:
    """Per-sequence numerator and denominator of late_early_ratio (``eps`` is unused).

    alpha ``[L, H, S]`` as in :func:`sink_metrics`; returns ``{"late_early_ratio": (num [S], den [S])}``:
    num_s / den_s = mean of alpha[:, :, s] over the last / first ceil(L/3) layers and all heads,
    so ``num.sum() / den.sum()`` is the reported ratio.
    """
    a = np.asarray(alpha, dtype=np.float64)
    n = math.ceil(a.shape[0] / 3)
    return {"late_early_ratio": (a[-n:].mean(axis=(0, 1)), a[:n].mean(axis=(0, 1)))}
