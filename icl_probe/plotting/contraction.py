"""Contraction figure: predicted vs observed per-layer rate; induction surprisal by layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from icl_probe.plotting.common import ModelData, no_data, qc_note, save, styles

SURPRISAL_NAMES = ("surprisal", "induction_surprisal", "e")


def layer_curves(md: ModelData, names) -> tuple[str | None, dict]:
    """The first of ``names`` in the model's layers table and step -> (layers, values)."""
    if md.layers is None or md.layers.empty:
        return None, {}
    for name in names:
        sub = md.layers[md.layers["metric"] == name]
        if len(sub):
            return name, {float(s): (g["layer"].to_numpy(), g["value"].to_numpy(dtype=float))
                          for s, g in sub.sort_values("layer").groupby("step")}
    return None, {}


def pick_steps(steps, k: int = 5) -> list:
    """Up to k steps spread evenly over the ordered list (first and last kept)."""
    steps = sorted(steps)
    if len(steps) <= k:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, k)).astype(int))
    return [steps[i] for i in idx]


def plot_contraction(models: list[ModelData], out_dir, name: str = "contraction"):
    """Left: rho_pred vs rho_obs, one point per checkpoint, with y = x. Right: induction
    surprisal by layer at up to 5 checkpoints of one model (the deepest clean model with
    per-layer surprisal). Returns ([png, pdf], caption)."""
    sty = styles(models)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    pts = [md for md in models if "rho_obs" in md.table and ("rho_pred" in md.table or "slope_alpha" in md.table)]
    for md in pts:
        pred = md.column("rho_pred") if "rho_pred" in md.table else 1.0 - md.column("slope_alpha")
        kw = {k: v for k, v in sty[md.model].items() if k != "linestyle"}
        left.scatter(md.column("rho_obs"), pred, s=18, alpha=0.8,
                     marker="x" if md.flagged else "o", **kw)
    if pts:
        lims = np.array(left.get_xlim() + left.get_ylim())
        lo, hi = lims.min(), lims.max()
        left.plot([lo, hi], [lo, hi], color="0.3", linewidth=0.8, label="y = x")
        left.set_xlim(lo, hi)
        left.set_ylim(lo, hi)
        left.set_xlabel("observed rate ρ_obs (residual ratio per layer)")
        left.set_ylabel("predicted rate ρ_pred = 1 − slope_alpha")
        left.legend(fontsize=8, loc="best")
    else:
        no_data(left, "no rho_pred / rho_obs columns")
    left.set_title("Predicted vs observed contraction")

    candidates = [(md, found) for md in models if (found := layer_curves(md, SURPRISAL_NAMES)[1])]
    chosen, curves = None, {}
    if candidates:  # clean before QC-flagged, then the deepest; the first of equals
        chosen, curves = max(candidates, key=lambda c: (not c[0].flagged,
                                                        max(len(layers) for layers, _ in c[1].values())))
    if chosen is None:
        no_data(right, "no per-layer induction surprisal")
    else:
        shown = pick_steps(list(curves))
        cmap = plt.get_cmap("viridis")
        for i, step in enumerate(shown):
            layers, vals = curves[step]
            right.plot(layers, vals, marker="o", markersize=3,
                       color=cmap(i / max(len(shown) - 1, 1)), label=f"step {step:g}")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel("layer (0 = embedding)")
        right.set_ylabel("induction surprisal (nats)")
        right.legend(fontsize=8, title=chosen.model + (" (excluded)" if chosen.flagged else ""), title_fontsize=8)
    right.set_title("Induction surprisal by layer")
    paths = save(fig, out_dir, name)
    caption = (
        "Per-layer contraction of the readout error. Left: the rate predicted from the update slope "
        "(rho_pred = 1 - slope_alpha) against the rate observed from the log-linear fit of the residual "
        "over layers (rho_obs), one point per checkpoint and colour per model, with the line of "
        "agreement. Right: induction surprisal (nats) by layer at up to five checkpoints"
        + (f" of {chosen.model}" if chosen is not None else "") + "." + qc_note(models))
    return paths, caption
