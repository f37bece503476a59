"""Probes without a figure of their own (third-party probes): each scalar against training, per model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from icl_probe.plotting.common import (CheckpointAxis, ModelData, draw_measured, label, no_data, qc_note, save,
                                      styles)


def plot_probe_scalars(models: list[ModelData], out_dir, probes: dict[str, tuple[str, ...]],
                       name: str = "probe_scalars"):
    """One panel per scalar of each probe in ``probes`` (name -> scalar names), against steps.
    Returns ([png, pdf], caption)."""
    panels = [(probe, col) for probe, cols in probes.items() for col in cols]
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(7.5, 2.6 * max(len(panels), 1) + 0.6),
                             layout="constrained", sharex=True, squeeze=False)
    axes = axes[:, 0]
    for i, (ax, (probe, col)) in enumerate(zip(axes, panels)):
        drawn = False
        for md in models:
            if col in md.table and np.isfinite(md.column(col)).any():
                kw = dict(sty[md.model])
                if i:
                    kw.pop("label")
                draw_measured(ax, axis.x(md), md.column(col), **kw)
                drawn = True
        axis.apply(ax, label=ax is axes[-1])
        if not drawn:
            no_data(ax, f"no {col} column", keep_x=True)
            continue
        ax.set_ylabel(label(col, probe, width=30), fontsize=8)
    if not panels:
        no_data(axes[0], "no probe without a figure of its own is enabled")
    elif any(ax.get_legend_handles_labels()[0] for ax in axes[:1]):
        axes[0].legend(fontsize=7, loc="best")
    axes[0].set_title("Probes without a figure of their own: each scalar across training")
    paths = save(fig, out_dir, name)
    listed = "; ".join(f"{p}: {', '.join(cols)}" for p, cols in probes.items()) or "none"
    caption = (f"Every scalar of the enabled probes that have no figure of their own ({listed}) against "
               f"{axis.label}, one line per model (its own colour and marker shape), in the units the probe "
               "defines (see the probe's module)."
               + qc_note(models))
    return paths, caption
