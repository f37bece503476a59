"""After the peak: decay of magnitude (ER) and direction (sign agreement), held-out change.

Inputs are trajectories ordered by step, (n,) arrays; the final checkpoint is
the last entry. Undefined results are None.
"""

from __future__ import annotations

import numpy as np

HELDOUT_METRICS = ("induction_acc", "ar_acc", "ar_logp")


def _last_finite(v):
    v = np.asarray(v, dtype=float)
    return float(v[-1]) if v.size and np.isfinite(v[-1]) else None


def er_decay(er) -> float | None:
    """ER_final / peak_er - 1 (dimensionless; -0.3 = the final ER is 30 % below peak).

    er: (n,) error reduction in digits. None when peak_er <= 0 or ER_final is not finite.
    """
    v = np.asarray(er, dtype=float)
    if not np.isfinite(v).any():
        return None
    pk, last = float(np.nanmax(v)), _last_finite(v)
    if pk <= 0 or last is None:
        return None
    return last / pk - 1.0


def sa_decay(sa) -> float | None:
    """SA_final / max(SA) - 1, with SA the sign agreement (fraction, 0..1).

    sa: (n,). None when max(SA) <= 0 or SA_final is not finite.
    """
    v = np.asarray(sa, dtype=float)
    if not np.isfinite(v).any():
        return None
    mx, last = float(np.nanmax(v)), _last_finite(v)
    if mx <= 0 or last is None:
        return None
    return last / mx - 1.0


def lifecycle_label(er_dec: float | None, sa_dec: float | None,
                    er_threshold: float = -0.15, sa_threshold: float = -0.10) -> str | None:
    """The life-cycle label from er_decay and sa_decay (thresholds from config).

    "direction decays" if sa_decay < sa_threshold; otherwise "magnitude
    attenuates, direction preserved" if er_decay <= er_threshold, else "stable".
    None when a needed decay is undefined.
    """
    if sa_dec is None:
        return None
    if sa_dec < sa_threshold:
        return "direction decays"
    if er_dec is None:
        return None
    if er_dec <= er_threshold:
        return "magnitude attenuates, direction preserved"
    return "stable"


def heldout_change(peak_index: int | None, metrics: dict) -> dict:
    """Change of held-out capability from the peak-ER checkpoint to the final one.

    peak_index: index of the peak-ER checkpoint (``emergence.peak``); metrics:
    name -> (n,) array for any of induction_acc (fraction), ar_acc (fraction),
    ar_logp (nats). Returns name -> {"at_peak", "final", "change"} (change =
    final - at_peak); absent names are left out.
    """
    out = {}
    if peak_index is None:
        return out
    for name in HELDOUT_METRICS:
        if name not in metrics:
            continue
        v = np.asarray(metrics[name], dtype=float)
        at_peak, final = float(v[peak_index]), float(v[-1])
        ok = np.isfinite(at_peak) and np.isfinite(final)
        out[name] = {"at_peak": at_peak if ok else None, "final": final if ok else None,
                     "change": final - at_peak if ok else None}
    return out

