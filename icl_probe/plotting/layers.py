"""Per-layer readout figure: mean readout error by layer at one checkpoint per model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from icl_probe.plotting.common import (ModelData, dodge_step, label, layer_dodge, no_data, qc_note, save, spread,
                                      styles)
from icl_probe.plotting.contraction import layer_curves
from icl_probe.stats.forecast import nearest_index


def readout_step(md: ModelData, which="final") -> float | None:
    """The checkpoint to show: "final", "peak" (peak ER) or a step number (nearest)."""
    steps = md.table["step"].to_numpy(dtype=float)
    if not len(steps):
        return None
    if which == "final":
        return float(steps[-1])
    if which == "peak":
        pk = md.stats.get("statistics", {}).get("peak_step")
        return float(pk) if pk is not None else float(steps[-1])
    return float(steps[nearest_index(steps, float(which))])


def plot_layer_readout(models: list[ModelData], out_dir, which="final", name: str = "layer_readout"):
    """mean_err (digits) by layer at each model's ``which`` checkpoint (see ``readout_step``);
    the x axis is relative depth l/L when the models differ in depth. Each model has its
    colour and marker shape, and the lines are shifted sideways a little (``layer_dodge``)
    so that coinciding ones show every marker. Returns ([png, pdf], caption)."""
    sty = styles(models)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    curves = []
    for md in models:
        _, by_step = layer_curves(md, ("mean_err",))
        step = readout_step(md, which)
        if by_step and step is not None:
            step = min(by_step, key=lambda s: abs(s - step))
            curves.append((md, step, *by_step[step]))
    if not curves:
        no_data(ax, "no per-layer mean_err")
        relative = False
    else:
        relative = len({len(c[2]) for c in curves}) > 1
        for k, (md, step, layers, vals) in enumerate(curves):
            x = layer_dodge(layers, k, len(curves), layers.max() if relative else None)
            kw = dict(sty[md.model])
            kw["label"] = f"{kw['label']}, step {step:g}"
            ax.plot(x, vals, markersize=5, markerfacecolor="none", markeredgewidth=1.1, linewidth=1.2, **kw)
        ax.set_xlabel(label("relative_depth" if relative else "layer"))
        ax.set_ylabel(label("mean_err"))
        if not relative:
            ax.set_xticks(np.unique(np.concatenate([c[2] for c in curves])))
        ax.legend(fontsize=8, loc="best")
    what = {"final": "the final checkpoint", "peak": "the peak-ER checkpoint"}.get(which, f"step ~{which}")
    ax.set_title(f"Per-layer GD readout at {what}")
    paths = save(fig, out_dir, name)
    half = -spread(0, len(curves), dodge_step(len(curves), relative))
    shift = (f"; lines are shifted sideways by up to ±{half:.2g} {'in l / L' if relative else 'layer'} so that "
             "coinciding ones stay visible" if len(curves) > 1 else "")
    caption = (
        f"Per-layer readout at {what}: mean absolute error of the logit-lens digit readout (digits) at "
        "each layer, from the embedding (layer 0) to the last block, one line per model (its own colour "
        "and marker shape)"
        + ("; depth is relative (l / L) because the models differ in depth" if relative else "") + shift
        + ". A falling line is a forward pass that moves toward the least-squares answer layer by layer."
        + qc_note(models))
    return paths, caption
