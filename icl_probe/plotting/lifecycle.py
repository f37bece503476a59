"""Life-cycle figure: magnitude (ER), direction (sign agreement) and held-out capability vs training."""

from __future__ import annotations

import matplotlib.pyplot as plt

from icl_probe.plotting.common import (CheckpointAxis, ModelData, draw_measured, label, no_data, qc_note, save,
                                      styles)

HELDOUT = (("induction_acc", "-", "induction"), ("ar_acc", ":", "assoc. recall"))


def plot_lifecycle(models: list[ModelData], out_dir, name: str = "lifecycle"):
    """Three panels against the same checkpoint axis as the other figures (steps for one
    suite, tokens for mixed suites: ``CheckpointAxis``). Returns ([png, pdf], caption)."""
    axis = CheckpointAxis(models)
    sty = styles(models)
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 8.5), layout="constrained", sharex=True)
    panels = ("error_reduction", "sign_agreement", None)
    heldout_drawn = False
    for ax, col in zip(axes, panels):
        axis.apply(ax, label=ax is axes[-1])
        any_drawn = False
        for md in models:
            cols = [(c, ls, lab) for c, ls, lab in HELDOUT if c in md.table] if col is None \
                else ([(col, None, None)] if col in md.table else [])
            for c, ls, lab in cols:
                kw = dict(sty[md.model])
                if col is None:
                    kw["linestyle"] = "--" if md.flagged else ls
                if ax is not axes[0]:
                    kw.pop("label")
                draw_measured(ax, axis.x(md), md.column(c), markersize=3.5, **kw)
                any_drawn = True
        if not any_drawn:
            no_data(ax, "no " + (col or "held-out accuracy") + " column", keep_x=True)
            continue
        heldout_drawn = heldout_drawn or col is None
        ax.set_ylabel(label(col or "heldout", width=30))
        axis.apply(ax, label=ax is axes[-1])
    axes[0].legend(fontsize=7, loc="upper left")
    if heldout_drawn:
        for c, ls, lab in HELDOUT:
            axes[2].plot([], [], color="0.3", linestyle=ls, label=f"{lab} ({c})")
        axes[2].legend(fontsize=7, loc="upper left")
    axes[0].axhline(0, color="0.3", linewidth=0.8)
    axes[0].set_title("Life cycle: magnitude, direction and held-out capability")
    paths = save(fig, out_dir, name)
    caption = (
        "Life cycle of the mechanism. Error reduction (magnitude, digits), sign agreement (direction: "
        "the fraction of layer updates that point toward the answer) and held-out capability (induction "
        f"accuracy solid, associative-recall accuracy dotted) against {axis.label}, the same axis as the "
        "other figures of this run, one line per model (its own colour and marker shape)." + qc_note(models))
    return paths, caption
