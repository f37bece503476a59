"""Associative recall ``k1 v1 ... kn vn kq -> v``: a held-out in-context capability.

Pure functions of arrays (see docs/metrics.md, "Associative recall").
"""

from __future__ import annotations

import numpy as np

SCALARS = ("ar_acc", "ar_logp")
PROMPT_AXES = {"logp": 0, "correct": 0}


def recall_metrics(logp: np.ndarray, correct: np.ndarray) -> dict:
    """ar_acc and ar_logp for one seed.

    logp ``[P]``: final-layer log-prob of the target value (nats); correct ``[P]``:
    whether the target is the final-layer argmax.
    """
    logp, correct = np.asarray(logp, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    return {"ar_acc": float(np.mean(correct)), "ar_logp": float(np.mean(logp))}


def per_prompt(logp: np.ndarray, correct: np.ndarray) -> dict:
    """Per-prompt values of ar_acc and ar_logp (their means are the scalars): ``{name: (num [P], None)}``."""
    return {"ar_acc": (np.asarray(correct, dtype=np.float64), None),
            "ar_logp": (np.asarray(logp, dtype=np.float64), None)}
