"""tables.html: a suite's summary and QC tables as one HTML page, for the Snakemake report.

Built from the same DataFrames as summary.csv and qc.csv (no number is recomputed here): the
summary's headline columns with their 95 % intervals, three significant digits, and every QC
issue. An empty cell of summary.csv shows as "none" (undefined, null or excluded: the reason is
in the model's stats.json, and ``icl-probe summary`` prints it).
"""

from __future__ import annotations

import html
import math

import pandas as pd

# (summary.csv column, title, has an interval)
SUMMARY_SHOWN = (
    ("n_checkpoints", "checkpoints", False),
    ("qc_status", "QC", False),
    ("phases", "emergence", False),
    ("half_max_step_interp", "half-max step", True),
    ("zero_crossing_interp", "zero-crossing step", True),
    ("peak_er", "peak error reduction", True),
    ("lifecycle", "life cycle", False),
    ("er_decay", "error-reduction decay", True),
    ("co_emergence_lag", "co-emergence lag (log10 steps)", True),
)
TEXT_COLUMNS = {"qc_status", "phases", "lifecycle"}
QC_SHOWN = (("model", "model"), ("status", "status"), ("kind", "kind"), ("reason", "reason"),
            ("revisions", "checkpoints named"))

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #444; max-width: 60em; }
"""


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v)


def fmt(v) -> str:
    """Three significant digits for a number (the nearest integer from 100 on: steps, counts),
    the text for a string, "none" for an empty cell."""
    if _missing(v):
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if abs(v) >= 100:  # a step or a count: the nearest integer
            return f"{v:.0f}"
        return f"{v:.3g}"
    return str(v)


def _cell(text: str, numeric: bool) -> str:
    return f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def summary_rows(summary: pd.DataFrame) -> list[list[str]]:
    """The shown cells of each model: a value, with " [lo, hi]" where it has an interval."""
    rows = []
    for _, r in summary.iterrows():
        cells = [str(r["model"])]
        for col, _, has_ci in SUMMARY_SHOWN:
            text = fmt(r.get(col))
            if has_ci and text != "none" and not _missing(r.get(col + "_ci_lo")):
                text += f" [{fmt(r[col + '_ci_lo'])}, {fmt(r[col + '_ci_hi'])}]"
            cells.append(text)
        rows.append(cells)
    return rows


def tables_html(suite: str, summary: pd.DataFrame, qc: pd.DataFrame) -> str:
    """The page: the summary table (one row per model) and the QC table (one row per issue)."""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ["model", *(t for _, t, _ in SUMMARY_SHOWN)])
    numeric = [False, *(col not in TEXT_COLUMNS for col, _, _ in SUMMARY_SHOWN)]
    body = "".join("<tr>" + "".join(_cell(c, n) for c, n in zip(row, numeric)) + "</tr>"
                   for row in summary_rows(summary))
    qc_head = "".join(f"<th>{html.escape(t)}</th>" for _, t in QC_SHOWN)
    qc_body = "".join("<tr>" + "".join(_cell("" if _missing(r.get(c)) else str(r[c]).replace(";", "; "), False)
                                       for c, _ in QC_SHOWN) + "</tr>" for _, r in qc.iterrows())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>icl-probe: {html.escape(suite)} summary and QC</title>
<style>{STYLE}</style></head><body>
<h2>Suite {html.escape(suite)}: one row per model</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p class="note">Each value with its 95 % interval in brackets, as in summary.csv (definitions:
docs/metrics.md). "none": undefined, null or excluded; the reason is in the model's stats.json,
and <code>icl-probe summary results</code> prints it.</p>
<h2>Quality control: one row per issue (a clean model: one row, status clean)</h2>
<table><thead><tr>{qc_head}</tr></thead><tbody>{qc_body}</tbody></table>
<p class="note">As in qc.csv; a checkpoint QC names is drawn but marked on the figures, or skipped
(duplicates), as its reason says.</p>
</body></html>
"""
