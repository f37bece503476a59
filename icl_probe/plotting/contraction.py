"""Contraction figure: predicted vs observed per-layer rate; induction surprisal by layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from icl_probe.plotting.common import (LINESTYLES, MARKERS, ModelData, dodge_step, label, layer_dodge, no_data,
                                      qc_note, save, spread, styles)

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


def _rates(md: ModelData):
    """(steps, rho_obs, rho_pred) at the checkpoints where both are finite."""
    pred = md.column("rho_pred") if "rho_pred" in md.table else 1.0 - md.column("slope_alpha")
    obs, steps = md.column("rho_obs"), md.column("step")
    keep = np.isfinite(obs) & np.isfinite(pred)
    return steps[keep], obs[keep], pred[keep]


def _step_text(step: float) -> str:
    return f"step {step:g}"


def plot_contraction(models: list[ModelData], out_dir, name: str = "contraction"):
    """Left: rho_pred vs rho_obs, one point per checkpoint, with y = x: each model its colour
    and marker shape (legend), its points joined faintly in step order and its first and last
    checkpoints annotated with their step. Right: induction surprisal by layer at up to 5
    checkpoints of one model (the deepest clean model with per-layer surprisal), each
    checkpoint its own (colour, line style, marker) and shifted sideways a little so that
    coinciding lines stay visible. Returns ([png, pdf], caption)."""
    sty = styles(models)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    pts = [md for md in models if "rho_obs" in md.table and ("rho_pred" in md.table or "slope_alpha" in md.table)]
    annotated = False
    for k, md in enumerate(pts):
        steps, obs, pred = _rates(md)
        kw = dict(sty[md.model])
        left.plot(obs, pred, linestyle="none", markersize=6, markerfacecolor="none", markeredgewidth=1.2,
                  alpha=0.9, **{k: v for k, v in kw.items() if k != "linestyle"})
        left.plot(obs, pred, color=kw["color"], linestyle=kw["linestyle"], linewidth=0.6, alpha=0.35,
                  zorder=1)
        for i in sorted({0, len(steps) - 1}) if len(steps) else ():
            # first checkpoint labelled up-left, last down-right, each model a line further out,
            # with a leader line: labels of models whose points coincide do not cover each other
            dx, dy = (-14, 12 + 11 * k) if i == 0 else (14, -14 - 11 * k)
            left.annotate(f"{md.model} {_step_text(steps[i])}", (obs[i], pred[i]), xytext=(dx, dy),
                          textcoords="offset points", fontsize=7, color=kw["color"],
                          ha="right" if i == 0 else "left", va="center", zorder=2,
                          bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                          arrowprops={"arrowstyle": "-", "color": kw["color"], "linewidth": 0.6,
                                      "shrinkA": 0, "shrinkB": 3})
            annotated = True
    if pts:
        left.relim()
        left.autoscale_view()
        lims = np.array(left.get_xlim() + left.get_ylim())
        lo, hi = lims.min(), lims.max()
        pad = 0.04 * (hi - lo)
        left.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", linewidth=0.8, label="y = x", zorder=0)
        left.set_xlim(lo - pad, hi + pad)
        left.set_ylim(lo - pad, hi + pad)
        left.set_xlabel(label("rho_obs"))
        left.set_ylabel(label("rho_pred"))
        left.legend(fontsize=8, loc="best")
    else:
        no_data(left, "no rho_pred / rho_obs columns")
    left.set_title("Predicted vs observed contraction")

    candidates = [(md, found) for md in models if (found := layer_curves(md, SURPRISAL_NAMES)[1])]
    chosen, curves = None, {}
    if candidates:  # clean before QC-flagged, then the deepest; the first of equals
        chosen, curves = max(candidates, key=lambda c: (not c[0].flagged,
                                                        max(len(layers) for layers, _ in c[1].values())))
    shown = []
    if chosen is None:
        no_data(right, "no per-layer induction surprisal")
    else:
        shown = pick_steps(list(curves))
        cmap = plt.get_cmap("viridis")
        for i, step in enumerate(shown):
            layers, vals = curves[step]
            right.plot(layer_dodge(layers, i, len(shown)), vals, marker=MARKERS[i % len(MARKERS)],
                       linestyle=LINESTYLES[i % len(LINESTYLES)], markersize=5, markerfacecolor="none",
                       markeredgewidth=1.1, linewidth=1.3, color=cmap(0.85 * i / max(len(shown) - 1, 1)),
                       label=_step_text(step))
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel(label("layer"))
        right.set_ylabel(label("surprisal"))
        right.legend(fontsize=8, title=chosen.model + (" (excluded)" if chosen.flagged else ""), title_fontsize=8)
    right.set_title("Induction surprisal by layer" + (f" ({chosen.model})" if chosen is not None else ""))
    paths = save(fig, out_dir, name)
    caption = (
        "Per-layer contraction of the readout error. Left: the rate predicted from the update slope "
        "(rho_pred = 1 - slope_alpha) against the rate observed from the log-linear fit of the residual "
        "over layers (rho_obs), one point per checkpoint, each model its own colour and marker shape "
        "(legend), its points joined faintly in step order"
        + (" with its first and last checkpoints labelled by model and step" if annotated else "")
        + ", with the line of agreement y = x. Right: induction surprisal (nats) by layer at "
        + (f"{len(shown)} checkpoint{'s' if len(shown) != 1 else ''} of {chosen.model} (dark early to light "
           "late, each its own line style and marker shape"
           + (f", shifted sideways by up to ±{-spread(0, len(shown), dodge_step(len(shown))):.2g} layer so that coinciding "
              "lines stay visible" if len(shown) > 1 else "") + ")"
           if chosen is not None else "up to five checkpoints of one model")
        + "." + qc_note(models))
    return paths, caption
