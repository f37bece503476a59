"""Co-emergence figure: error reduction and the attention-sink late/early ratio on a shared axis."""

from __future__ import annotations

import matplotlib.pyplot as plt

from icl_probe.plotting.common import (ZC_MARKER, CheckpointAxis, ModelData, dodged_vlines, draw_measured, label,
                                      missing_marks_note, moved, no_data, qc_note, save, sink_rate_note,
                                      stacked_marks, styles, zero_crossing_step)


def half_rise_step(md: ModelData) -> float | None:
    """The sink ratio's half-rise step from stats.json (``sink_half_rise_step``, or the older
    nested ``sinks.half_rise.interpolated``); None when undefined."""
    st = md.stats.get("statistics") or {}
    if st.get("sink_half_rise_step") is not None:
        return st["sink_half_rise_step"]
    return ((st.get("sinks") or {}).get("half_rise") or {}).get("interpolated")


def plot_coemergence(models: list[ModelData], out_dir, name: str = "coemergence", eps: float | None = None):
    """Top: ER (digits), the zero crossings as hollow diamonds on the 0 line; bottom: sink
    late/early ratio; dotted vertical lines at the ER zero crossing (top) and the ratio's
    half-rise (bottom), side by side where models coincide. ``eps``: the sink threshold the
    caption names when sink_rate_eps is all zero (default: the probe's). Returns ([png, pdf], caption)."""
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, (top, bot) = plt.subplots(2, 1, figsize=(7.5, 6.5), layout="constrained", sharex=True)
    side_by_side, crossings, notes = False, False, []
    for ax, col in ((top, "error_reduction"), (bot, "late_early_ratio")):
        drawn = [md for md in models if col in md.table]
        axis.apply(ax, label=ax is bot)
        if not drawn:
            no_data(ax, f"no {col} column", keep_x=True)
            continue
        marks = []
        for md in drawn:
            draw_measured(ax, axis.x(md), md.column(col), **sty[md.model])
            mark = zero_crossing_step(md) if col == "error_reduction" else half_rise_step(md)
            if mark is not None and not md.flagged:
                marks.append((axis.from_step(md, mark), sty[md.model]["color"]))
        ax.set_ylabel(label(col, width=34))
        axis.apply(ax, label=ax is bot)
        lines = dodged_vlines(ax, marks, linestyle=":", linewidth=1.3)
        if col == "error_reduction":
            lines += stacked_marks(ax, marks)
            crossings = bool(marks)
        key, what = (("zero_crossing_interp", "zero-crossing line") if col == "error_reduction"
                     else ("sink_half_rise_step", "half-rise line"))
        if note := missing_marks_note(drawn, key, what):
            notes.append(note)
        side_by_side = side_by_side or any(moved(ln) for ln in lines)
    top.axhline(0, color="0.3", linewidth=0.8)
    bot.axhline(1, color="0.3", linewidth=0.8)
    top.plot([], [], color="0.3", linestyle=":", label="ER zero crossing / sink half-rise")
    if crossings:
        top.plot([], [], linestyle="none", markeredgecolor="0.3", label="ER zero crossing", **ZC_MARKER)
    top.legend(fontsize=8, loc="best")
    top.set_title("Co-emergence of the GD readout and attention sinks")
    paths = save(fig, out_dir, name)
    caption = (
        "Co-emergence of the GD-like readout and attention sinks. Error reduction (digits, top) and the "
        "attention-sink late/early ratio (mean first-token attention in the last third of layers over the "
        f"first third, bottom) against {axis.label}, one line per model (its own colour and marker shape). "
        "Dotted vertical lines in the model's colour mark the interpolated ER zero crossing (top, also a "
        "hollow diamond on the 0 line) and the step where the ratio first reaches half its rise (bottom); "
        "their log10 difference is the co-emergence lag"
        + ("; marks of several models at the same step are drawn side by side (lines a few points apart, "
           "diamonds stacked vertically), each at its own step" if side_by_side else "")
        + "".join(f"; {n}" for n in notes) + "." + sink_rate_note(models, eps) + qc_note(models))
    return paths, caption
