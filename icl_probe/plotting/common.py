"""Shared figure plumbing: the data a figure gets, the axis labels (``LABELS``), the
checkpoint axis, styles (a colour and a marker shape per model), marks that must stay
visible where models coincide, saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402
import pandas as pd  # noqa: E402

from icl_probe.io import atomic_write  # noqa: E402
from icl_probe.stats.axis import left_edge  # noqa: E402
from icl_probe.stats.qc import excluded_details, excluded_reasons, is_excluded, is_partial, partial_columns  # noqa: E402

QC_COLOR = "0.6"

# The axis label of every quantity a figure draws: a human name with its unit, then the
# column's code name in brackets (the name in table.csv / layers.csv and docs/metrics.md).
# Every figure takes its labels from here (``label``), none spells its own.
LABELS = {
    "step": "training step (log scale; step 0 at left edge)",
    "tokens_B": "training tokens, billions (log scale; 0 at left edge)",
    "layer": "layer (0 = embedding)",
    "relative_depth": "relative depth l / L (0 = embedding)",
    "error_reduction": "error reduction ER, digits (error_reduction)",
    "sign_agreement": "sign agreement, fraction of layer updates toward the answer (sign_agreement)",
    "slope_alpha": "GD-readout slope α (slope_alpha)",
    "rho_pred": "predicted contraction rate ρ_pred = 1 − α, per layer (rho_pred)",
    "rho_obs": "observed contraction rate ρ_obs, residual ratio per layer (rho_obs)",
    "mean_err": "readout error |y* − ŷ|, digits (mean_err)",
    "surprisal": "induction surprisal, nats (surprisal)",
    "induction_acc": "induction accuracy, fraction (induction_acc)",
    "ar_acc": "associative-recall accuracy, fraction (ar_acc)",
    "heldout": "held-out accuracy, fraction (induction_acc, ar_acc)",
    "sink_frac": "sink fraction, share of attention on token 0 (sink_frac)",
    "sink_rate_eps": "sink rate, percent of heads with α > eps (sink_rate_eps)",
    "late_early_ratio": "sink late/early ratio, late ÷ early sink_frac (late_early_ratio)",
}

# One marker shape per model (in model order), on every figure; "D" is kept for the
# ER zero crossing. Line markers are hollow, so that coinciding shapes stay visible.
MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">", "h", "*")
# Line styles for several lines of one model (the checkpoints of a by-layer panel).
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (8, 2)), (0, (1, 3)))
# Sideways shift between neighbouring lines on a by-layer axis (layers; on a relative-depth
# axis, l / L), so that lines that coincide show every marker.
# Whatever the number of lines, they spread over at most ±DODGE_MAX (in the same units).
LAYER_DODGE, LAYER_DODGE_MAX = 0.07, 0.2
RELATIVE_DODGE, RELATIVE_DODGE_MAX = 0.015, 0.04


def label(name: str, probe: str | None = None, width: int | None = None) -> str:
    """The axis label of column ``name`` (``LABELS``); a column not in the table is shown by
    its code name (``probe``: "(probe NAME)" added). ``width``: wrap to lines of about that
    many characters (for y labels of short panels)."""
    text = LABELS.get(name) or (f"{name} (probe {probe})" if probe else name)
    if width is None or len(text) <= width:
        return text
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False))


@dataclass
class ModelData:
    """One model as the figures see it: its table (one row per checkpoint, step
    order), the long per-layer table (or None), its stats.json content and QC issues.

    Drawn in one of three styles (``styles``): clean; partly measured (some column
    lacks values at some checkpoints: normal colour, markers only where measured);
    excluded by QC (grey, dashed)."""

    suite: str
    model: str
    table: pd.DataFrame
    layers: pd.DataFrame | None = None
    stats: dict = field(default_factory=dict)
    issues: list = field(default_factory=list)
    sink_eps: float | None = None  # probes.attention_sinks.eps its results were made with, if known

    @property
    def excluded(self) -> bool:
        """Excluded from statistics by QC (``qc.is_excluded``)."""
        return is_excluded(self.issues)

    @property
    def flagged(self) -> bool:
        """Same as ``excluded`` (partly measured models and notes are not flagged)."""
        return self.excluded

    @property
    def partial(self) -> bool:
        """Partly measured and not excluded."""
        return not self.excluded and is_partial(self.issues)

    def column(self, name: str) -> np.ndarray | None:
        return self.table[name].to_numpy(dtype=float) if name in self.table else None


def styles(models: list[ModelData]) -> dict[str, dict]:
    """model -> line kwargs: a marker shape per model (``MARKERS``, in model order, hollow)
    and a colour per model that is not excluded, labelled "model" (clean) or "model (partly
    measured)"; excluded models grey and dashed, labelled "model (excluded: reason)". Draw
    a column with ``draw_measured`` so a partly measured one has markers only where it was
    measured."""
    cmap = plt.get_cmap("tab10")
    out, k = {}, 0
    for i, md in enumerate(models):
        if md.excluded:
            out[md.model] = {"color": QC_COLOR, "linestyle": "--", "zorder": 1.5,
                             "label": f"{md.model} (excluded: {excluded_reasons(md.issues)})"}
        else:
            out[md.model] = {"color": cmap(k % 10), "linestyle": "-", "zorder": 2.5,
                             "label": md.model + (" (partly measured)" if md.partial else "")}
            k += 1
        out[md.model]["marker"] = MARKERS[i % len(MARKERS)]
    return out


def measured(x, *ys):
    """x and the ys at the checkpoints where the first y is finite (a partly measured
    column: markers only there, the line through those points)."""
    x = np.asarray(x, dtype=float)
    ys = [np.asarray(y, dtype=float) for y in ys]
    keep = np.isfinite(x) & np.isfinite(ys[0]) if ys else np.isfinite(x)
    return (x[keep], *[y[keep] for y in ys])


def draw_measured(ax, x, y, markersize: float = 4, **kw):
    """``ax.plot`` of y against x at the measured (finite) points only: hollow markers there
    (the style's shape, default "o") and the line through them; a partly measured column gets
    markers twice as large, so that a column measured at a few checkpoints is not mistaken for
    a continuous curve."""
    xm, ym = measured(x, y)
    partly = len(ym) < np.isfinite(np.asarray(x, dtype=float)).sum()
    kw.setdefault("marker", "o")
    kw.setdefault("markerfacecolor", "none")
    kw.setdefault("markeredgewidth", 1.0)
    kw.setdefault("linewidth", 1.2)
    return ax.plot(xm, ym, markersize=markersize * (2 if partly else 1), **kw)


def clusters(ax, xs, min_pt: float) -> list[list[int]]:
    """Indices of ``xs`` (data x of ``ax``, limits already set) grouped where neighbours lie
    closer than ``min_pt`` points on screen, each group in x order."""
    if not len(xs):
        return []
    px = ax.transData.transform(np.column_stack([np.asarray(xs, dtype=float), np.zeros(len(xs))]))[:, 0]
    pt = px * 72.0 / ax.figure.dpi
    order = sorted(range(len(xs)), key=lambda i: (pt[i], i))
    groups = [[order[0]]]
    for i in order[1:]:
        if pt[i] - pt[groups[-1][-1]] < min_pt:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def spread(k: int, n: int, step: float) -> float:
    """The offset of item k of n spread symmetrically around 0, ``step`` apart."""
    return (k - (n - 1) / 2.0) * step


ZC_MARKER = {"marker": "D", "markersize": 8, "markerfacecolor": "white", "markeredgewidth": 1.6}


def stacked_marks(ax, marks, y: float = 0.0, size: float = ZC_MARKER["markersize"]) -> list:
    """Hollow diamonds at (x, y) for ``marks`` = [(x, color)], one ``ax.plot`` each. Where
    several fall on the same spot (closer than a marker on screen) they are stacked
    vertically, a marker's height apart and centred on y, so that every one stays visible;
    x is never moved. Call after the x limits are set. Returns the lines."""
    lines = [None] * len(marks)
    for group in clusters(ax, [m[0] for m in marks], size * 1.6):
        for k, i in enumerate(group):
            x, color = marks[i]
            dy = spread(k, len(group), size * 1.25)
            tr = offset_copy(ax.transData, fig=ax.figure, y=dy, units="points")
            (lines[i],) = ax.plot([x], [y], linestyle="none", markeredgecolor=color, transform=tr,
                                  zorder=4, gid="moved" if dy else None, **ZC_MARKER)
    return lines


def dodge_step(n: int, relative: bool = False) -> float:
    """The sideways step between neighbouring lines of n on a by-layer axis: ``LAYER_DODGE``
    (``RELATIVE_DODGE`` on a relative-depth axis), smaller where n lines would spread wider
    than ±``*_DODGE_MAX``."""
    step, most = (RELATIVE_DODGE, RELATIVE_DODGE_MAX) if relative else (LAYER_DODGE, LAYER_DODGE_MAX)
    return min(step, 2 * most / (n - 1)) if n > 1 else 0.0


def layer_dodge(layers, k: int, n: int, depth: float | None = None) -> np.ndarray:
    """The x of line k of n on a by-layer axis: ``layers`` shifted by ``spread(k, n,
    dodge_step(n))``; with ``depth`` (L) the relative depth l / L, shifted likewise."""
    x = np.asarray(layers, dtype=float)
    if depth is None:
        return x + spread(k, n, dodge_step(n))
    return x / max(depth, 1) + spread(k, n, dodge_step(n, relative=True))


def moved(line) -> bool:
    """Whether a mark of ``stacked_marks`` or ``dodged_vlines`` was moved on screen off its
    plain position because it shared its spot with another (its gid is "moved")."""
    return line is not None and line.get_gid() == "moved"


def dodged_vlines(ax, marks, gap_pt: float = 2.5, **kw) -> list:
    """Vertical lines at ``marks`` = [(x, color)]; lines that would fall on one another
    (closer than ``gap_pt`` points) are drawn side by side, ``gap_pt`` apart, centred on
    their x. Call after the x limits are set. Returns the lines."""
    lines = [None] * len(marks)
    for group in clusters(ax, [m[0] for m in marks], gap_pt):
        for k, i in enumerate(group):
            x, color = marks[i]
            dx = spread(k, len(group), gap_pt)
            tr = offset_copy(ax.get_xaxis_transform(), fig=ax.figure, x=dx, units="points")
            (lines[i],) = ax.plot([x, x], [0, 1], color=color, transform=tr, scalex=False, scaley=False,
                                  gid="moved" if dx else None, **kw)
    return lines


def zero_crossing_step(md: ModelData) -> float | None:
    """The interpolated ER zero crossing from stats.json (``zero_crossing_interp``, or the
    older nested ``zero_crossing.interpolated``); None when undefined."""
    st = md.stats.get("statistics") or {}
    if st.get("zero_crossing_interp") is not None:
        return st["zero_crossing_interp"]
    zc = st.get("zero_crossing")
    return zc.get("interpolated") if isinstance(zc, dict) else None


def null_reason(md: ModelData, key: str) -> str | None:
    """Why statistic ``key`` of the model is null, from stats.json ``null`` (the entry for
    ``key``, else for ``all``); None when no reason is recorded."""
    null = md.stats.get("null") or {}
    return null.get(key) or null.get("all")


def missing_marks_note(models: list[ModelData], key: str, what: str) -> str:
    """The caption's clause for the models (not excluded) without a ``what`` mark, grouped by
    the reason stats.json gives for ``key`` being null, e.g. "no diamond for a and b (no
    valley: min ER >= -tau_min)", or "no model has a diamond (...)"; "" when every model has one."""
    by_reason: dict[str, list[str]] = {}
    for md in models:
        if md.flagged or (md.stats.get("statistics") or {}).get(key) is not None:
            continue
        by_reason.setdefault(null_reason(md, key) or "not computed", []).append(md.model)
    if not by_reason:
        return ""
    return "; ".join(f"no model has a {what} ({why})" if len(names) == len(models)
                     else f"no {what} for {_join(names)} ({why})" for why, names in by_reason.items())


class CheckpointAxis:
    """The x axis of a trajectory figure: steps (one suite) or tokens (mixed suites,
    or when asked), on a log scale with 0 drawn at the left edge (a tenth of the
    smallest positive value across all models), tick-labelled "0"."""

    def __init__(self, models: list[ModelData], use_tokens: bool | None = None):
        suites = {md.suite for md in models}
        if use_tokens is None:
            use_tokens = len(suites) > 1
        if use_tokens and not all("tokens_B" in md.table and md.table["tokens_B"].notna().all()
                                  for md in models):
            use_tokens = False  # no token counts: fall back to steps
        self.tokens = use_tokens
        self.column = "tokens_B" if use_tokens else "step"
        vals = np.concatenate([md.table[self.column].to_numpy(dtype=float) for md in models]) \
            if models else np.array([1.0])
        self.edge = left_edge(vals)
        self.xmax = float(np.nanmax(vals)) if np.isfinite(vals).any() and np.nanmax(vals) > 0 else self.edge * 10
        self.label = LABELS[self.column]

    def x(self, md: ModelData) -> np.ndarray:
        v = md.table[self.column].to_numpy(dtype=float)
        return np.where(v > 0, v, self.edge)

    def from_step(self, md: ModelData, step: float | None) -> float | None:
        """A step of ``md`` (e.g. a zero crossing) on this axis (tokens interpolated by step)."""
        if step is None:
            return None
        if self.tokens:
            s, t = md.table["step"].to_numpy(dtype=float), md.table["tokens_B"].to_numpy(dtype=float)
            step = float(np.interp(step, s, t))
        return step if step > 0 else self.edge

    def apply(self, ax, label: bool = True) -> None:
        """Log scale, decade ticks, the "0" tick at the left edge and a faint break after it."""
        ax.set_xscale("log")
        lo_dec = int(np.ceil(np.log10(self.edge * 2)))
        hi_dec = int(np.ceil(np.log10(max(self.xmax, self.edge * 10))))
        decades = [10.0 ** e for e in range(lo_dec, hi_dec + 1)]
        ax.xaxis.set_major_locator(FixedLocator([self.edge] + decades))
        ax.xaxis.set_major_formatter(FixedFormatter(["0"] + [_fmt(d) for d in decades]))
        minor = [k * d for d in [10.0 ** (lo_dec - 1)] + decades for k in range(2, 10)
                 if self.edge * 10 < k * d < self.xmax * 1.5]
        ax.xaxis.set_minor_locator(FixedLocator(minor))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(self.edge * 1.6, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xlim(self.edge / 1.5, self.xmax * 1.5)
        if label:
            ax.set_xlabel(self.label)


def _fmt(t: float) -> str:
    e = int(round(np.log10(t)))
    return f"$10^{{{e}}}$"


def no_data(ax, text: str, keep_x: bool = False) -> None:
    """Say in the panel what is missing; ``keep_x`` for a panel sharing its x axis."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_yticks([])
    if not keep_x:
        ax.set_xticks([])


def save(fig, out_dir, name: str) -> list[Path]:
    """Atomically write ``{name}.png`` (150 dpi) and ``{name}.pdf``; closes the figure
    (labelled ``name`` first, so that a test that keeps figures open can find it)."""
    fig.set_label(name)
    out_dir = Path(out_dir)
    paths = []
    for ext in ("png", "pdf"):
        paths.append(atomic_write(out_dir / f"{name}.{ext}",
                                  lambda p, ext=ext: fig.savefig(p, format=ext, dpi=150)))
    plt.close(fig)
    return paths


_RST_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*`|_[]"})


def rst_text(text: str) -> str:
    """``text`` as a reStructuredText paragraph that renders as written: markup
    characters (``* ` | _ [ ] \\``) are backslash-escaped, lines wrapped at 88."""
    import textwrap

    return textwrap.fill(" ".join(text.split()).translate(_RST_SPECIAL), width=88,
                         break_long_words=False, break_on_hyphens=False)


def write_caption(out_dir, name: str, caption: str) -> Path:
    """Atomically write ``{name}.rst``: the figure's caption as reStructuredText, the
    file the Snakemake report shows beside ``{name}.png`` (report/{name}.rst includes it)."""
    text = rst_text(caption) + "\n"
    return atomic_write(Path(out_dir) / f"{name}.rst", lambda p: p.write_text(text))


def _partial_text(md: ModelData) -> str:
    cols = partial_columns(md.issues)
    n = len(md.table)
    counts = {}
    for c in cols:
        k = int(np.isfinite(md.column(c)).sum()) if c in md.table else 0
        counts.setdefault(k, []).append(c)
    parts = [f"{', '.join(cs)} at {k} of {n} checkpoints" for k, cs in counts.items()]
    return f"{md.model} ({'; '.join(parts)})" if parts else md.model


def qc_note(models: list[ModelData]) -> str:
    """The caption's sentence on the drawing convention for partly measured and excluded
    models ("" when every model is clean)."""
    partial = [_partial_text(md) for md in models if md.partial]
    excluded = [f"{md.model} ({excluded_details(md.issues)})" for md in models if md.excluded]
    out = ""
    if partial:
        out += (" Partly measured models (legend \"partly measured\") keep their colour, with markers only at "
                "the checkpoints where a column was measured and the line drawn through those points: "
                + ", ".join(partial) + ".")
    if excluded:
        out += " Excluded by quality control and drawn grey and dashed: " + ", ".join(excluded) + "."
    return out


def default_sink_eps() -> float:
    """The attention-sink probe's default eps (``probes.attention_sinks.eps``)."""
    from icl_probe.probes.attention_sinks import PROBE

    return float(PROBE.settings["eps"]["default"])


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def sink_rate_note(models: list[ModelData], eps: float | None = None) -> str:
    """The caption's sentence on a ``sink_rate_eps`` that is 0 at every measured checkpoint
    (of every model that has the column, or of the models named), saying why and pointing
    to ``sink_frac``, with the largest per-layer ``sink_frac`` of those models where
    layers.csv has it; "" when no model's sink_rate_eps is all zero. ``eps``: the threshold
    (default: the probe's default, ``default_sink_eps``)."""
    if eps is None:  # the threshold the models' results were made with, else the probe's default
        known = {md.sink_eps for md in models if md.sink_eps is not None}
        eps = known.pop() if len(known) == 1 else default_sink_eps()
    have = [md for md in models if "sink_rate_eps" in md.table and np.isfinite(md.column("sink_rate_eps")).any()]
    zero = [md for md in have if np.all(md.column("sink_rate_eps")[np.isfinite(md.column("sink_rate_eps"))] == 0)]
    if not zero:
        return ""
    where = "every checkpoint" if len(zero) == len(have) else f"every checkpoint of {_join([md.model for md in zero])}"
    out = (f" sink_rate_eps is 0 at {where}: no head puts more than eps={eps:g} of its attention on token 0; "
           "see sink_frac for the continuous measure")
    fr = [md.layers.loc[md.layers["metric"] == "sink_frac", "value"].to_numpy(dtype=float)
          for md in zero if md.layers is not None and "metric" in md.layers]
    fr = np.concatenate(fr) if fr else np.array([])
    if np.isfinite(fr).any():
        out += f" (its largest layer mean there is {np.nanmax(fr):.2f})"
    return out + "."
