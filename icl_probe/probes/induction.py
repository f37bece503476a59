"""Induction on repeated random tokens: per-layer surprisal, copying accuracy, prefix matching.

Pure functions of arrays (see docs/metrics.md, "Induction"). A sequence
is a block x_0..x_{m-1} repeated once; query positions t = m .. 2m-2 predict
x_{t+1}. All sequences have the same number of query positions, so a mean of
per-sequence means is the mean over sequences and positions.
"""

from __future__ import annotations

import numpy as np

from icl_probe.probes.common import ols

SCALARS = ("total_contraction", "rho2_per_layer", "geometric_fit_r2", "monotone_improve_frac",
           "induction_acc", "induction_logp", "icl_score")
PER_LAYER = ("surprisal",)
PER_HEAD = ("prefix_matching",)
PROMPT_AXES = {"surprisal": 1, "final_logp": 0, "final_correct": 0, "loss_first": 0, "prefix": 2}


def query_positions(block_len: int) -> np.ndarray:
    """Query positions t = m .. 2m-2 (target x_{t+1} lies in the second block)."""
    return np.arange(block_len, 2 * block_len - 1)


def first_block_positions(block_len: int) -> np.ndarray:
    """Positions t = 0 .. m-2 predicting x_1 .. x_{m-1} the first time (icl_score baseline)."""
    return np.arange(0, block_len - 1)


def prefix_positions(block_len: int) -> np.ndarray:
    """Source position t - m + 1 attended by a prefix-matching head at each query t."""
    return query_positions(block_len) - block_len + 1


def surprisal_curve(e: np.ndarray) -> dict:
    """Shape statistics of a per-layer surprisal curve ``e [L+1]`` (nats).

    total_contraction = min e / e_0; OLS of ln e_l on l over layers argmax .. argmin
    (inclusive) gives rho2_per_layer = exp(2 slope) and geometric_fit_r2, both None
    when argmin <= argmax + 1; monotone_improve_frac = share of l -> l+1 where e falls.
    """
    e = np.asarray(e, dtype=np.float64)
    lo, hi = int(np.argmin(e)), int(np.argmax(e))
    rho2 = fit_r2 = None
    if lo > hi + 1:
        l = np.arange(hi, lo + 1, dtype=np.float64)
        slope, _, _, r2 = ols(l, np.log(e[hi : lo + 1]))
        rho2, fit_r2 = float(np.exp(2.0 * slope)), r2
    return {
        "total_contraction": float(e.min() / e[0]),
        "rho2_per_layer": rho2,
        "geometric_fit_r2": fit_r2,
        "monotone_improve_frac": float(np.mean(e[1:] < e[:-1])) if e.size > 1 else np.nan,
    }


def induction_metrics(surprisal: np.ndarray, final_logp: np.ndarray, final_correct: np.ndarray,
                      loss_first: np.ndarray, prefix: np.ndarray | None = None) -> dict:
    """Every induction row of the spec for one seed.

    surprisal ``[L+1, S]``: per layer and sequence, mean over query positions of
    -log softmax(lens(h_l))[target]; final_logp ``[S]`` and final_correct ``[S]``:
    mean final-layer target log-prob and argmax accuracy over query positions;
    loss_first ``[S]``: mean final-layer loss over first-block positions t = 0..m-2;
    prefix ``[L, H, S]``: mean attention from query t to t - m + 1 (or None).
    """
    e = np.asarray(surprisal, dtype=np.float64).mean(axis=1)
    out = {"surprisal": e, **surprisal_curve(e)}
    final_logp = np.asarray(final_logp, dtype=np.float64)
    final_correct = np.asarray(final_correct, dtype=np.float64)  # float64 sums, as per_prompt's
    loss_first = np.asarray(loss_first, dtype=np.float64)
    out["induction_acc"] = float(np.mean(final_correct))
    out["induction_logp"] = float(final_logp.mean())
    out["icl_score"] = float(np.mean(loss_first) - (-final_logp).mean())
    if prefix is not None:
        out["prefix_matching"] = np.asarray(prefix, dtype=np.float64).mean(axis=-1)
    return out


def per_prompt(surprisal: np.ndarray, final_logp: np.ndarray, final_correct: np.ndarray,
               loss_first: np.ndarray, prefix: np.ndarray | None = None) -> dict:
    """Per-sequence values of induction_acc and induction_logp (their means are the scalars).

    Same inputs as :func:`induction_metrics`; returns ``{name: (num [S], None)}``.
    """
    return {"induction_acc": (np.asarray(final_correct, dtype=np.float64), None),
            "induction_logp": (np.asarray(final_logp, dtype=np.float64), None)}
