"""A short per-model summary of a results folder, and where the outputs are.

The workflow prints it when a run succeeds; ``icl-probe summary RESULTS_DIR``
prints it later. It only reads ``results/{suite}/{model}/stats.json`` (written by
the aggregate step): one row per model folder, and a line saying so when a
model's stats.json is missing or unreadable. Every number is taken from
stats.json; a null statistic is shown as "none" with the reason stats.json gives.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

# folders of results/ that are not suites, and of a suite that are not models
NOT_SUITES = frozenset({"figures", "settings"})
NOT_MODELS = frozenset({"figures"})
# a model folder holds one of these (stats.json once aggregated)
MODEL_MARKERS = ("stats.json", "manifest.json", "table.csv")

# the statistics read, their column titles, and the skipped keys that also explain their absence
EMERGENCE_STEP = "half_max_step_interp"
COLUMNS = {
    EMERGENCE_STEP: ("half-max step", ("emergence",)),
    "phases": ("emergence label", ("emergence",)),
    "lifecycle": ("life cycle", ("sa_decay", "emergence")),
}
# shown in the model's line (the emergence label is left out: with the longest life-cycle label
# the line would pass WIDTH; a missing one shows as the others' reason, "no emergence (...)")
SHOWN = (EMERGENCE_STEP, "lifecycle")
WIDTH = 100


def _model_dirs(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    dirs = []
    for suite in sorted(p for p in results_dir.iterdir() if p.is_dir() and p.name not in NOT_SUITES):
        dirs += [m for m in sorted(p for p in suite.iterdir() if p.is_dir() and p.name not in NOT_MODELS)
                 if any((m / name).exists() for name in MODEL_MARKERS)]
    return dirs


def _reason(stats: dict, key: str, also: tuple[str, ...]) -> str:
    """Why ``key`` has no value: stats.json's ``null`` mapping, else its ``skipped`` entries."""
    null = stats.get("null") or {}
    skipped = stats.get("skipped") or {}
    for where, name in [(null, key), (skipped, key), *((skipped, a) for a in also), (skipped, "all")]:
        if where.get(name):
            return str(where[name])
    return "not in stats.json"


def _row(suite: str, model: str, stats_path: Path) -> dict:
    row = {"suite": suite, "model": model, "stats": str(stats_path)}
    if not stats_path.exists():
        return {**row, "error": "no stats.json yet (not aggregated)"}
    try:
        stats = json.loads(stats_path.read_text())
        if not isinstance(stats, dict):
            raise ValueError("not a JSON object")
        st = stats.get("statistics") or {}
        if not isinstance(st, dict):
            raise ValueError("'statistics' is not a JSON object")
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        return {**row, "error": f"unreadable stats.json ({type(e).__name__}: {e})"}
    phases = st.get("phases")
    values = {
        EMERGENCE_STEP: st.get(EMERGENCE_STEP),
        "phases": phases.get("label") if isinstance(phases, dict) else None,
        "lifecycle": st.get("lifecycle"),
    }
    nulls = {k: _reason(stats, k, COLUMNS[k][1]) for k, v in values.items() if v is None}
    if EMERGENCE_STEP in nulls and st.get("half_max_step") is not None:
        nulls[EMERGENCE_STEP] += f"; half_max_step {_step(st['half_max_step'])}"
    qc = stats.get("qc") or []
    return {**row, "suite": stats.get("suite") or suite, "model": stats.get("model") or model,
            "n_checkpoints": stats.get("n_checkpoints"), "emergence_step": values[EMERGENCE_STEP],
            "emergence_label": values["phases"], "lifecycle": values["lifecycle"],
            "qc_status": stats.get("qc_status"), "n_qc_issues": len(qc) if isinstance(qc, list) else None,
            "null": nulls}


def summarise_results(results_dir, models: list[tuple[str, str]] | None = None) -> list[dict]:
    """One row per model folder ``results_dir/{suite}/{model}/`` (sorted by suite, model).

    A row has suite, model, stats (the stats.json path), n_checkpoints, emergence_step
    (``half_max_step_interp``), emergence_label (``phases.label``), lifecycle, qc_status,
    n_qc_issues and null (key -> reason, for each of these statistics that is null);
    or only suite, model, stats and error when stats.json is missing or unreadable.
    ``models``: only these (suite, model) pairs, in this order (a pair without a folder
    gets an error row); default: every model folder found.
    """
    results_dir = Path(results_dir)
    if models is not None:
        return [_row(s, m, results_dir / s / m / "stats.json") for s, m in models]
    return [_row(d.parent.name, d.name, d / "stats.json") for d in _model_dirs(results_dir)]


def _step(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else str(value)


def format_summary(rows: list[dict], results_dir) -> str:
    """The summary text: a heading, one aligned line per model, the reasons of its null
    statistics, and where the figures, the per-model tables and the report are."""
    results_dir = str(results_dir).rstrip("/") or "."
    if not rows:
        return f"icl-probe: nothing has been aggregated in {results_dir}/ yet: run `snakemake` (`-n` to preview)"
    titles = ("model", "ckpts", COLUMNS[EMERGENCE_STEP][0], COLUMNS["lifecycle"][0], "QC (issues)")
    table, notes = [], []
    for r in rows:
        name = f"{r['suite']}/{r['model']}"
        if "error" in r:
            table.append((name, r["error"]))
            continue
        qc = str(r["qc_status"] or "unknown") + (f" ({r['n_qc_issues']})" if r["n_qc_issues"] else "")
        table.append((name, "?" if r["n_checkpoints"] is None else str(r["n_checkpoints"]),
                      "none" if r["emergence_step"] is None else _step(r["emergence_step"]),
                      str(r["lifecycle"] or "none"), qc))
        by_reason: dict[str, list[str]] = {}
        for key, why in r["null"].items():
            if key in SHOWN:
                by_reason.setdefault(why, []).append(COLUMNS[key][0])
        notes += [textwrap.fill(f"{name}: {', '.join(cols)} none: {why}", WIDTH, initial_indent="  ",
                                subsequent_indent="    ", break_on_hyphens=False)
                  for why, cols in by_reason.items()]
    full = [t for t in table if len(t) == len(titles)]
    widths = [max(len(t[i]) for t in [titles, *full]) for i in range(len(titles))]
    widths[0] = max(len(t[0]) for t in [titles, *table])
    right = {1, 2}  # the numbers

    def line(cells) -> str:
        if len(cells) != len(titles):  # a model without statistics: its message
            return f"  {cells[0]:<{widths[0]}}  {cells[1]}"
        return "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    n = len(rows)
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    one = suites[0] if len(suites) == 1 else "{suite}"
    return "\n".join([
        f"icl-probe summary of {results_dir}/ ({n} model{'s' if n != 1 else ''}):",
        line(titles), *(line(t) for t in table), *notes,
        f"Figures: {results_dir}/{one}/figures/*.png (and summary.csv, qc.csv, forecast.json there)",
        f"Per model: {results_dir}/{one}/{{model}}/table.csv, stats.json, qc.json",
        f"Report: snakemake --report {results_dir}/{one}/report.html (with the run's --configfile)",
    ])
