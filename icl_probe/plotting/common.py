"""Shared figure plumbing: the data a figure gets, the checkpoint axis, styles, saving."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from icl_probe.io import atomic_write  # noqa: E402
from icl_probe.stats.axis import left_edge  # noqa: E402
from icl_probe.stats.qc import excluded_reasons, is_excluded, is_partial, partial_columns  # noqa: E402

QC_COLOR = "0.6"


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
    """model -> line kwargs: a colour per model that is not excluded, labelled "model"
    (clean) or "model (partly measured)"; excluded models grey and dashed, labelled
    "model (excluded: reason)". Draw a column with ``measured`` so a partly measured
    one has markers only where it was measured."""
    cmap = plt.get_cmap("tab10")
    out, k = {}, 0
    for md in models:
        if md.excluded:
            out[md.model] = {"color": QC_COLOR, "linestyle": "--", "zorder": 1.5,
                             "label": f"{md.model} (excluded: {excluded_reasons(md.issues)})"}
        else:
            out[md.model] = {"color": cmap(k % 10), "linestyle": "-", "zorder": 2.5,
                             "label": md.model + (" (partly measured)" if md.partial else "")}
            k += 1
    return out


def measured(x, *ys):
    """x and the ys at the checkpoints where the first y is finite (a partly measured
    column: markers only there, the line through those points)."""
    x = np.asarray(x, dtype=float)
    ys = [np.asarray(y, dtype=float) for y in ys]
    keep = np.isfinite(x) & np.isfinite(ys[0]) if ys else np.isfinite(x)
    return (x[keep], *[y[keep] for y in ys])


def draw_measured(ax, x, y, markersize: float = 3, **kw):
    """``ax.plot`` of y against x at the measured (finite) points only: markers there and the
    line through them; a partly measured column gets markers twice as large, so that a
    column measured at a few checkpoints is not mistaken for a continuous curve."""
    xm, ym = measured(x, y)
    partly = len(ym) < np.isfinite(np.asarray(x, dtype=float)).sum()
    return ax.plot(xm, ym, marker="o", markersize=markersize * (2 if partly else 1), **kw)


def zero_crossing_step(md: ModelData) -> float | None:
    """The interpolated ER zero crossing from stats.json (``zero_crossing_interp``, or the
    older nested ``zero_crossing.interpolated``); None when undefined."""
    st = md.stats.get("statistics") or {}
    if st.get("zero_crossing_interp") is not None:
        return st["zero_crossing_interp"]
    zc = st.get("zero_crossing")
    return zc.get("interpolated") if isinstance(zc, dict) else None


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
        self.label = ("training tokens (billions, log scale; 0 at left edge)" if use_tokens
                      else "training step (log scale; step 0 at left edge)")

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
    """Atomically write ``{name}.png`` (150 dpi) and ``{name}.pdf``; closes the figure."""
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
    excluded = [f"{md.model} ({excluded_reasons(md.issues)})" for md in models if md.excluded]
    out = ""
    if partial:
        out += (" Partly measured models (legend \"partly measured\") keep their colour, with markers only at "
                "the checkpoints where a column was measured and the line drawn through those points: "
                + ", ".join(partial) + ".")
    if excluded:
        out += " Excluded by quality control and drawn grey and dashed: " + ", ".join(excluded) + "."
    return out
