"""Co-emergence figure: error reduction and the attention-sink late/early ratio on a shared axis."""

from __future__ import annotations

import matplotlib.pyplot as plt

from icl_probe.plotting.common import (CheckpointAxis, ModelData, draw_measured, no_data, qc_note, save, styles,
                                      zero_crossing_step)


def plot_coemergence(models: list[ModelData], out_dir, name: str = "coemergence"):
    """Top: ER (digits); bottom: sink late/early ratio; vertical lines at the ER zero
    crossing (top) and the ratio's half-rise (bottom). Returns ([png, pdf], caption)."""
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, (top, bot) = plt.subplots(2, 1, figsize=(7.5, 6.5), layout="constrained", sharex=True)
    for ax, col, ylabel in ((top, "error_reduction", "error reduction (digits)"),
                            (bot, "late_early_ratio", "sink late/early ratio\n(late ÷ early sink_frac)")):
        drawn = [md for md in models if col in md.table]
        axis.apply(ax, label=ax is bot)
        if not drawn:
            no_data(ax, f"no {col} column", keep_x=True)
            continue
        for md in drawn:
            draw_measured(ax, axis.x(md), md.column(col), markersize=3, **sty[md.model])
            st = md.stats.get("statistics", {})
            mark = (zero_crossing_step(md) if col == "error_reduction"
                    else st.get("sink_half_rise_step")
                    if st.get("sink_half_rise_step") is not None
                    else ((st.get("sinks") or {}).get("half_rise") or {}).get("interpolated"))
            if mark is not None and not md.flagged:
                ax.axvline(axis.from_step(md, mark), color=sty[md.model]["color"], linestyle=":", linewidth=1.2)
        ax.set_ylabel(ylabel)
        axis.apply(ax, label=ax is bot)
    top.axhline(0, color="0.3", linewidth=0.8)
    bot.axhline(1, color="0.3", linewidth=0.8)
    top.plot([], [], color="0.3", linestyle=":", label="ER zero crossing / sink half-rise")
    top.legend(fontsize=8, loc="best")
    top.set_title("Co-emergence of the GD readout and attention sinks")
    paths = save(fig, out_dir, name)
    caption = (
        "Co-emergence of the GD-like readout and attention sinks. Error reduction (digits, top) and the "
        "attention-sink late/early ratio (mean first-token attention in the last third of layers over the "
        f"first third, bottom) against {axis.label}, one line per model. Dotted vertical lines mark the "
        "interpolated ER zero crossing (top) and the step where the ratio first reaches half its rise "
        "(bottom); their log10 difference is the co-emergence lag." + qc_note(models))
    return paths, caption
