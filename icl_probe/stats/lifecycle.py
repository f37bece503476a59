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


def _decided(value: float | None, ci, threshold: float) -> str | None:
    """"below" / "at_or_above" the threshold, judged on the 95 % interval when there is one
    (the whole interval on one side), on the value otherwise; None when the interval
    straddles the threshold or the value is undefined."""
    if value is None:
        return None
    if ci is None or ci[0] is None or ci[1] is None:
        return "below" if value < threshold else "at_or_above"
    if ci[1] < threshold:
        return "below"
    if ci[0] >= threshold:
        return "at_or_above"
    return None


def lifecycle_label(er_dec: float | None, sa_dec: float | None,
                    er_threshold: float = -0.15, sa_threshold: float = -0.10,
                    er_ci=None, sa_ci=None) -> str | None:
    """The life-cycle label from er_decay and sa_decay (thresholds from config).

    "direction decays" if sa_decay < sa_threshold; otherwise "magnitude
    attenuates, direction preserved" if er_decay <= er_threshold, else "stable".
    With 95 % intervals (er_ci, sa_ci: [lo, hi]) a side is taken only when the
    whole interval lies on it; an interval that straddles a threshold gives
    "undetermined". None when a needed decay is undefined.
    """
    if sa_dec is None:
        return None
    direction = _decided(sa_dec, sa_ci, sa_threshold)
    if direction == "below":
        return "direction decays"
    if er_dec is None:
        return None
    if direction is None:
        return "undetermined"
    magnitude = _decided(er_dec, er_ci, er_threshold + 1e-12)  # er_decay <= threshold attenuates
    if magnitude == "below":
        return "magnitude attenuates, direction preserved"
    if magnitude == "at_or_above":
        return "stable"
    return "undetermined"


def nearest_measured(steps, values, target_step: float) -> int | None:
    """Index of the checkpoint nearest ``target_step`` (in log10 step, step 0 at the left
    edge; ties: the earlier) among those where ``values`` is finite; None if none is."""
    from icl_probe.stats.axis import left_edge, log_step

    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    ok = np.flatnonzero(np.isfinite(v))
    if not ok.size:
        return None
    edge = left_edge(s)
    x = log_step(s, edge)
    x0 = float(log_step([target_step], edge)[0])
    return int(ok[np.argmin(np.abs(x[ok] - x0))])


def heldout_change(steps, peak_step: float | None, metrics: dict, revisions=None) -> dict:
    """Change of held-out capability from the ER peak to the final measured checkpoint.

    steps: (n,) ordered; peak_step: the ER peak's step (``emergence.peak``);
    metrics: name -> (n,) for any of induction_acc (fraction), ar_acc (fraction),
    ar_logp (nats), possibly NaN where not measured. "At peak" is the measured
    checkpoint nearest the peak (``nearest_measured``), "final" the last measured
    one; both are named. Returns name -> {"at_peak", "final", "change",
    "at_peak_step", "final_step", (revisions when given), "n_measured"}; absent
    names are left out; with fewer than two measured checkpoints, or the same
    one for both, the values are None with a note.
    """
    out = {}
    if peak_step is None:
        return out
    s = np.asarray(steps, dtype=float)
    for name in HELDOUT_METRICS:
        if name not in metrics:
            continue
        v = np.asarray(metrics[name], dtype=float)
        ok = np.flatnonzero(np.isfinite(v))
        rec = {"at_peak": None, "final": None, "change": None, "at_peak_step": None, "final_step": None,
               "n_measured": int(ok.size)}
        i = nearest_measured(s, v, peak_step)
        at_final_peak = i is not None and i == int(ok[-1]) and s[i] == peak_step  # the peak is the final one
        if i is None or (not at_final_peak and (ok.size < 2 or i == int(ok[-1]))):
            rec["note"] = "needs two measured checkpoints: one near the peak and a later one"
            out[name] = rec
            continue
        j = int(ok[-1])
        rec.update(at_peak=float(v[i]), final=float(v[j]), change=float(v[j] - v[i]),
                   at_peak_step=float(s[i]), final_step=float(s[j]))
        if revisions is not None:
            rec.update(at_peak_revision=str(revisions[i]), final_revision=str(revisions[j]))
        if s[i] != peak_step:
            rec["note"] = f"not measured at the peak step {peak_step:g}: the nearest measured checkpoint is used"
        out[name] = rec
    return out
