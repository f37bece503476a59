"""Emergence figure: error reduction against training, one line per model."""

from __future__ import annotations

import matplotlib.pyplot as plt

from icl_probe.plotting.common import (ZC_MARKER, CheckpointAxis, ModelData, draw_measured, label, measured,
                                      missing_marks_note, moved, no_data, qc_note, save, stacked_marks, styles,
                                      zero_crossing_step)


def plot_emergence(models: list[ModelData], out_dir, name: str = "emergence"):
    """ER (digits) vs checkpoint, band = +-std over seeds, zero crossings marked (hollow
    diamonds on the 0 line, stacked where they coincide: ``stacked_marks``).

    Returns ([png, pdf], caption).
    """
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    drawn = [md for md in models if "error_reduction" in md.table]
    marks = []
    for md in drawn:
        x, er, sd = axis.x(md), md.column("error_reduction"), md.column("error_reduction_std")
        draw_measured(ax, x, er, **sty[md.model])
        if sd is not None:
            ax.fill_between(*measured(x, er - sd, er + sd), color=sty[md.model]["color"], alpha=0.15,
                            linewidth=0)
        zc = zero_crossing_step(md)
        if zc is not None and not md.flagged:
            marks.append((axis.from_step(md, zc), sty[md.model]["color"]))
    stacked = False
    if not drawn:
        no_data(ax, "no error_reduction column")
    else:
        ax.axhline(0, color="0.3", linewidth=0.8)
        axis.apply(ax)
        ax.set_ylabel(label("error_reduction"))
        lines = stacked_marks(ax, marks)
        stacked = any(moved(ln) for ln in lines)
        if marks:
            ax.plot([], [], linestyle="none", markeredgecolor="0.3", label="ER zero crossing (interpolated)",
                    **ZC_MARKER)
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title("GD readout: error reduction across training")
    paths = save(fig, out_dir, name)
    caption = (
        "Emergence of the GD-like readout. Error reduction (mean absolute error of the logit-lens digit "
        "readout at the embedding minus at the last layer, in digits; above 0 the forward pass moves "
        f"toward the least-squares answer) against {axis.label}, one line per model (its own colour and "
        "marker shape); the band is +-1 standard deviation over prompt seeds and a hollow diamond in the "
        "model's colour marks the ER zero crossing after the valley (linear in log10 step)"
        + ("; crossings of several models that fall on the same spot are stacked vertically, centred on "
           "the 0 line, at their own step" if stacked else "")
        + (f"; {note}" if (note := missing_marks_note(drawn, "zero_crossing_interp", "diamond")) else "")
        + "." + qc_note(models))
    return paths, caption

