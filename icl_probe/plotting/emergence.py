"""Emergence figure: error reduction against training, one line per model."""

from __future__ import annotations

import matplotlib.pyplot as plt

from icl_probe.plotting.common import (CheckpointAxis, ModelData, draw_measured, measured, no_data, qc_note, save,
                                      styles, zero_crossing_step)


def plot_emergence(models: list[ModelData], out_dir, name: str = "emergence"):
    """ER (digits) vs checkpoint, band = +-std over seeds, zero crossings marked.

    Returns ([png, pdf], caption).
    """
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    drawn = [md for md in models if "error_reduction" in md.table]
    for md in drawn:
        x, er, sd = axis.x(md), md.column("error_reduction"), md.column("error_reduction_std")
        draw_measured(ax, x, er, markersize=3, **sty[md.model])
        if sd is not None:
            ax.fill_between(*measured(x, er - sd, er + sd), color=sty[md.model]["color"], alpha=0.18,
                            linewidth=0)
        zc = zero_crossing_step(md)
        if zc is not None and not md.flagged:
            ax.plot([axis.from_step(md, zc)], [0.0], marker="D", markersize=7, markerfacecolor="white",
                    markeredgecolor=sty[md.model]["color"], linestyle="none")
    if not drawn:
        no_data(ax, "no error_reduction column")
    else:
        ax.axhline(0, color="0.3", linewidth=0.8)
        axis.apply(ax)
        ax.set_ylabel("error reduction (digits)")
        ax.plot([], [], marker="D", markerfacecolor="white", markeredgecolor="0.3", linestyle="none",
                label="zero crossing (interpolated)")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title("GD readout: error reduction across training")
    paths = save(fig, out_dir, name)
    caption = (
        "Emergence of the GD-like readout. Error reduction (mean absolute error of the logit-lens digit "
        "readout at the embedding minus at the last layer, in digits; above 0 the forward pass moves "
        f"toward the least-squares answer) against {axis.label}, one line per model; the band is "
        "+-1 standard deviation over prompt seeds and a hollow diamond marks the ER zero crossing "
        "after the valley (linear in log10 step)." + qc_note(models))
    return paths, caption
