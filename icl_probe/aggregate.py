"""The aggregation edge: files in, files out, around the pure statistics.

- ``aggregate_model``: one model's per-checkpoint results -> table.csv,
  table.parquet, layers.csv, stats.json, qc.json in the model's folder.
- ``aggregate_suite`` (``make_figures`` for the CLI): the models' folders ->
  qc.csv, summary.csv, forecast.json and the figures in one folder.
- ``aggregate_table``: a CSV with one row per (model, step) made elsewhere ->
  stats.json, qc.csv, summary.csv, forecast.json and the figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from icl_probe import SCHEMA_VERSION
from icl_probe.io import atomic_write, read_json, write_json, write_text
from icl_probe.plotting import ModelData, draw_all
from icl_probe.report_tables import tables_html
from icl_probe.stats import qc as qc_mod
from icl_probe.stats.forecast import DEFAULT_PAIRS, DEFAULT_TOLERANCE, forecast_across_models
from icl_probe.stats.model import model_statistics, settings, trajectory
from icl_probe.stats.table import (METRICS, SUFFIXES, ResultFiles, collect_checkpoint_results, load_manifest,
                                   probed_revisions, read_per_prompt, read_table, weight_fingerprints, write_tables)

log = logging.getLogger(__name__)

# Column names accepted by ``aggregate_table`` for the spec's metrics.
TABLE_ALIASES = {"heldout_induction_acc": "induction_acc", "heldout_ar_acc": "ar_acc",
                 "heldout_ar_logp": "ar_logp"}


def _stats_record(suite: str, model: str, issues: list[dict], table: pd.DataFrame, cfg: dict,
                  samples: dict | None = None) -> dict:
    """stats.json content: statistics, or only the QC reasons when the model is excluded
    (``qc.is_excluded``; a partly measured model gets its statistics)."""
    excluded = qc_mod.is_excluded(issues)
    rec = {"schema_version": SCHEMA_VERSION, "suite": suite, "model": model,
           "excluded": excluded, "qc_status": qc_mod.qc_status(issues), "qc": issues}
    if excluded:
        rec.update(statistics={}, skipped={"all": "excluded by quality control: " + qc_mod.excluded_details(issues)},
                   n_checkpoints=int(len(table)))
        return rec
    rec.update(model_statistics(table, cfg, samples))
    return rec


def _qc_record(suite: str, model: str, issues: list[dict]) -> dict:
    return {"schema_version": SCHEMA_VERSION, "suite": suite, "model": model,
            "excluded": qc_mod.is_excluded(issues), "status": qc_mod.qc_status(issues), "issues": issues}


def restrict_manifest(manifest: dict, revisions: list[str] | None) -> dict:
    """The manifest with only the entries of ``revisions`` (all of them for None): with
    refinement the manifest lists every branch of the range, and a model is the revisions
    it analysed. A name the manifest lacks is a ConfigError naming it."""
    if revisions is None:
        return manifest
    names = {e["revision"] for e in manifest["revisions"]}
    unknown = [r for r in revisions if r not in names]
    if unknown:
        from icl_probe.config import ConfigError

        raise ConfigError(f"revision(s) {', '.join(unknown)} are not in the manifest of {manifest['repo_id']}; "
                          "rerun the resolve step (delete manifest.json) or fix the revision list")
    wanted = set(revisions)
    return {**manifest, "revisions": [e for e in manifest["revisions"] if e["revision"] in wanted]}


def analyse_model(model_dir, manifest, cfg: dict, results=None, revisions: list[str] | None = None):
    """One model's table, per-layer table, QC issues and stats.json record (nothing written).

    ``cfg``: filled stats settings (``stats.model.settings``); ``results`` and ``revisions``
    as in :func:`aggregate_model`. Returns (table, layers, issues, stats record).
    """
    manifest = restrict_manifest(load_manifest(manifest), revisions)
    files = ResultFiles(model_dir, results, cfg.get("probes"))
    table, layers = collect_checkpoint_results(model_dir, manifest, files, cfg.get("probes"),
                                               cfg.get("external") or ())
    present = {e["revision"]: set(files.read(e["revision"])) for e in probed_revisions(manifest)}
    issues = qc_mod.run_qc(table, manifest, weight_fingerprints(model_dir, manifest, files), present,
                           cfg.get("probes"))
    table["qc_flag"] = qc_mod.qc_flags(table, issues)
    samples = read_per_prompt(model_dir, manifest, files)
    rec = _stats_record(manifest["suite"], manifest["model"], issues, table, cfg, samples)
    return table, layers, issues, rec


def replay_refinement(model_dir, stats_cfg: dict, coarse_spec, refine_cfg: dict) -> dict:
    """Adaptive refinement replayed on a dense sweep's results: the coarse selection
    ``coarse_spec`` of the manifest, then the rounds exactly as ``icl-probe refine`` decides
    them (``icl_probe.refine.refine_round``), reading the results already there instead of
    probing. Returns {"rounds" (every round's record), "record" (the last one), "final" and
    "dense" (stats.json records of the refined revisions and of every revision)}."""
    from icl_probe.hub.selection import select_revisions
    from icl_probe.refine import refine_round

    model_dir = Path(model_dir)
    cfg = settings(stats_cfg)
    manifest = load_manifest(str(model_dir / "manifest.json"))
    coarse = select_revisions([e["revision"] for e in manifest["revisions"]], coarse_spec)
    rounds: list[dict] = []
    while not rounds or not rounds[-1]["done"]:
        previous = rounds[-1] if rounds else None
        stats = analyse_model(model_dir, manifest, cfg, revisions=previous["analysed"] if previous else coarse)[3]
        rounds.append(refine_round(manifest, stats, round_no=len(rounds) + 1, coarse=coarse, previous=previous,
                                   settings=refine_cfg))
    final = analyse_model(model_dir, manifest, cfg, revisions=rounds[-1]["analysed"])[3]
    return {"rounds": rounds, "record": rounds[-1], "final": final,
            "dense": analyse_model(model_dir, manifest, cfg)[3]}


def aggregate_model(model_dir, manifest_path, stats_cfg: dict | None = None,
                    results=None, revisions: list[str] | None = None,
                    refinement: dict | None = None) -> dict[str, Path]:
    """Table, statistics and QC for one model.

    model_dir: ``results/{suite}/{model}`` holding ``{revision}/{probe}.json``;
    manifest_path: its manifest.json; stats_cfg: the config's ``stats`` section
    (optional ``probes``: the probes every revision must have, ``external``: the
    third-party probe modules, to name their scalars). ``results``: exactly the result
    files to read (the workflow passes its inputs; grouped by their revision folder);
    without it, ``{revision}/{probe}.json`` of the ``probes`` (default our probes) are
    read -- never any other JSON that lies in a revision folder. ``revisions``: the
    manifest's revisions the model analyses (default all). ``refinement``: the last
    refinement round's record (``icl_probe.refine``), kept in stats.json. Writes
    table.csv, table.parquet, layers.csv, stats.json and qc.json into model_dir
    and returns their paths by name ("table", "parquet", "layers", "stats", "qc").
    """
    model_dir = Path(model_dir)
    table, layers, issues, rec = analyse_model(model_dir, manifest_path, settings(stats_cfg), results, revisions)
    paths = write_tables(table, layers, model_dir)
    suite, model = rec["suite"], rec["model"]
    if qc_mod.is_excluded(issues):
        log.warning("%s/%s excluded by QC: %s", suite, model, qc_mod.excluded_details(issues))
    elif issues:
        log.info("%s/%s QC: %s", suite, model, qc_mod.qc_summary(issues))
    if refinement is not None:
        rec["refinement"] = refinement
    paths["stats"] = write_json(model_dir / "stats.json", rec)
    paths["qc"] = write_json(model_dir / "qc.json", _qc_record(suite, model, issues))
    return paths


def _load_model_dir(model_dir) -> ModelData:
    d = Path(model_dir)
    table = read_table(d / "table.csv")
    layers = pd.read_csv(d / "layers.csv", dtype={"revision": str}) if (d / "layers.csv").exists() else None
    stats = read_json(d / "stats.json") if (d / "stats.json").exists() else {}
    qc = read_json(d / "qc.json") if (d / "qc.json").exists() else {}
    suite = stats.get("suite") or qc.get("suite") or (table["suite"].iloc[0] if len(table) else d.parent.name)
    model = stats.get("model") or qc.get("model") or (table["model"].iloc[0] if len(table) else d.name)
    return ModelData(suite=str(suite), model=str(model), table=table, layers=layers,
                     stats=stats, issues=qc.get("issues", stats.get("qc", [])), sink_eps=_sink_eps(d))


def _sink_eps(model_dir: Path) -> float | None:
    """The attention-sink threshold the model's results were made with (the ``settings`` of one
    of its attention_sinks.json), for the captions; None without one."""
    for path in sorted(model_dir.glob("*/attention_sinks.json")):
        if path.parent.name != "prompts":
            eps = (read_json(path).get("settings") or {}).get("eps")
            return None if eps is None else float(eps)
    return None


QC_TABLE_COLUMNS = ["suite", "model", "status", "kind", "reason", "revisions"]


def _qc_table(models: list[ModelData]) -> pd.DataFrame:
    """qc.csv: one row per issue (status = the model's ``qc_status``, kind = the issue's),
    and one row with status "clean" and empty kind/reason for a model without issues."""
    rows = []
    for md in models:
        status = qc_mod.qc_status(md.issues)
        if not md.issues:
            rows.append({"suite": md.suite, "model": md.model, "status": status, "kind": "", "reason": "",
                         "revisions": ""})
        for i in md.issues:
            rows.append({"suite": md.suite, "model": md.model, "status": status, "kind": qc_mod.issue_kind(i),
                         "reason": i["reason"], "revisions": ";".join(i["revisions"])})
    return pd.DataFrame(rows, columns=QC_TABLE_COLUMNS)


# summary.csv: (column, statistic key, has an interval); a "_tokens" column follows each step column.
SUMMARY_COLUMNS = (
    ("peak_er", True), ("peak_er_bias", False), ("peak_step", False), ("peak_tokens", False),
    ("half_max_step", False), ("half_max_tokens", False),
    ("half_max_step_interp", True), ("half_max_tokens_interp", False),
    ("zero_crossing_lo", False), ("zero_crossing_lo_tokens", False),
    ("zero_crossing_hi", False), ("zero_crossing_hi_tokens", False),
    ("zero_crossing_interp", True), ("zero_crossing_interp_tokens", False),
    ("er_decay", True), ("sa_decay", True), ("lifecycle", False),
    ("sink_half_rise_step", True), ("co_emergence_lag", True),
)


def _summary_table(models: list[ModelData]) -> pd.DataFrame:
    """One row per model: the headline statistics with their 95 % intervals (``_ci_lo``,
    ``_ci_hi``) and token counts next to steps; empty where undefined, null or excluded."""
    rows = []
    for md in models:
        st = md.stats.get("statistics", {})
        iv = md.stats.get("intervals", {})
        g = lambda *keys: _dig(st, keys)  # noqa: E731
        row = {"suite": md.suite, "model": md.model, "qc_status": qc_mod.qc_status(md.issues),
               "excluded": qc_mod.is_excluded(md.issues), "qc": qc_mod.qc_summary(md.issues),
               "n_checkpoints": md.stats.get("n_checkpoints"), "phases": g("phases", "label")}
        for key, has_ci in SUMMARY_COLUMNS:
            row[key] = g(key)
            if has_ci:
                ci = (iv.get(key) or {}).get("ci") or [None, None]
                row[key + "_ci_lo"], row[key + "_ci_hi"] = ci
        row["rate_spearman"] = g("rate_agreement", "spearman")
        row["median_rate_rel_error"] = g("rate_agreement", "median_rate_rel_error")
        rows.append(row)
    return pd.DataFrame(rows)


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _forecasts(models: list[ModelData], cfg: dict) -> dict:
    trajs = {md.model: trajectory(md.table) for md in models if not qc_mod.is_excluded(md.issues) and len(md.table)}
    pairs = [tuple(p) for p in cfg.get("forecast_pairs", DEFAULT_PAIRS)]
    tolerance = cfg.get("forecast_tolerance", DEFAULT_TOLERANCE)
    out = {"schema_version": SCHEMA_VERSION, "forecast_step": cfg["forecast_step"], "forecast_tolerance": tolerance,
           "models": sorted(trajs), "excluded": sorted(md.model for md in models if qc_mod.is_excluded(md.issues)),
           "pairs": []}
    for feature, target in pairs:  # each pair: see forecast_across_models (p-values, intervals, left_out)
        out["pairs"].append(forecast_across_models(trajs, feature, target, cfg["forecast_step"],
                                                   n_boot=cfg["bootstrap"], seed=cfg["seed"],
                                                   n_seeds=cfg["n_seeds"], tolerance=tolerance))
    return out


def _write_suite_outputs(models: list[ModelData], out_dir: Path, cfg: dict, figures: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    qc, summary = _qc_table(models), _summary_table(models)
    suites = ", ".join(dict.fromkeys(md.suite for md in models))
    paths: dict = {
        "qc": atomic_write(out_dir / "qc.csv", lambda p: qc.to_csv(p, index=False)),
        "summary": atomic_write(out_dir / "summary.csv", lambda p: summary.to_csv(p, index=False)),
        "forecast": write_json(out_dir / "forecast.json", _forecasts(models, cfg)),
        "tables": write_text(out_dir / "tables.html", tables_html(suites, summary, qc)),
    }
    if figures:
        paths["figures"] = draw_all(models, out_dir, cfg)
    return paths


def aggregate_suite(model_dirs, out_dir, stats_cfg: dict | None = None) -> dict:
    """Across models: QC table, summary, forecast and figures.

    model_dirs: folders already aggregated by ``aggregate_model`` (table.csv,
    layers.csv, stats.json, qc.json); out_dir: where to write qc.csv,
    summary.csv, forecast.json and ``{figure}.png``/``.pdf``/``.rst`` (caption) for
    every figure in ``icl_probe.plotting.FIGURES``. Returns paths by name; "figures"
    maps a figure name to {"paths": [png, pdf], "caption": text, "caption_file": rst}.
    """
    cfg = settings(stats_cfg)
    models = [_load_model_dir(d) for d in model_dirs]
    return _write_suite_outputs(models, Path(out_dir), cfg)


def make_figures(model_dirs, out_dir, stats_cfg: dict | None = None) -> dict:
    """The ``icl-probe figures`` entry point: ``aggregate_suite``."""
    return aggregate_suite(model_dirs, out_dir, stats_cfg)


class TableFormatError(ValueError):
    """A table given to ``aggregate --table`` that cannot be read as one row per (model, step)."""

    user_facing = True


# Cells read as a missing value (not an error) in a metric, step or token column.
MISSING_CELLS = frozenset({"", "nan", "NaN", "NAN", "NA", "<NA>", "null", "NULL", "None"})
# Columns that split one model name into several trajectories (OLMo-2 stages and ingredients).
TRAJECTORY_COLUMNS = ("stage", "ingredient")
_KEPT_ID_COLUMNS = ("suite", "model", "revision", "step", "tokens", "tokens_B", "commit")


def _is_metric_column(col: str) -> bool:
    return any(col == m + s for m in METRICS for s in ("",) + SUFFIXES)


def _numeric_column(df: pd.DataFrame, col: str, source) -> pd.Series:
    """The column as floats; "" / "NaN" / "NA" / "null" are missing (NaN); any other cell that
    is not a number raises TableFormatError naming the column, the row and the value."""
    raw = df[col].astype(str).str.strip()
    missing = raw.isin(MISSING_CELLS)
    vals = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = vals.isna() & ~missing
    if bad.any():
        rows = list(bad.to_numpy().nonzero()[0])
        first = rows[0]
        more = f" (and {len(rows) - 1} more row(s))" if len(rows) > 1 else ""
        raise TableFormatError(
            f"{source}: column {col!r} must be numeric, but row {first + 1} (file line {first + 2}) has "
            f"{df[col].iloc[first]!r}{more}; write plain numbers (e.g. 1234 or 0.5, no thousands separators) "
            "and leave unmeasured cells empty")
    return vals.astype(float)


def _trajectory_suffix(row: dict) -> str:
    parts = []
    for col in TRAJECTORY_COLUMNS:
        v = str(row.get(col, "")).strip()
        if v:
            parts.append(v if v.lower().startswith(col) else f"{col}{v}")
    return "-".join(parts)


def read_metric_table(table_csv, notes: list | None = None) -> pd.DataFrame:
    """Read a table made elsewhere: one row per (model, step), any subset of the metrics.

    Columns: ``model`` (required); ``step``, or only ``tokens`` / ``tokens_B`` (then
    the step is the token count, and a note says so); optional ``suite`` (default
    "table"), ``revision`` (default "step{step}", made unique within a model),
    ``commit``; any of the metric columns (``icl_probe.stats.table.METRICS`` and
    their ``_std``, ``_ci_lo``, ``_ci_hi``; ``heldout_induction_acc``,
    ``heldout_ar_acc``, ``heldout_ar_logp`` are read as induction_acc, ar_acc,
    ar_logp). Empty or "NaN" cells are missing values (QC marks the model partly
    measured). Other columns are ignored with a note (``qc_flag`` is recomputed).
    When a column ``stage`` or ``ingredient`` has more than one value for a model
    (OLMo-2 mid-training), each (model, stage, ingredient) is its own trajectory,
    named e.g. ``OLMo-2-1B/stage2-ingredient1``; they are never merged.

    notes: a list the notes are appended to (they are also logged at INFO).
    Raises TableFormatError (user-facing) naming the column when a required one
    is missing, or the column, row and value when a cell is not a number or a
    step is negative.
    """
    notes = [] if notes is None else notes

    def note(text):
        notes.append(text)
        log.info("%s: %s", table_csv, text)

    try:
        df = pd.read_csv(table_csv, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise TableFormatError(f"{table_csv}: the table is empty; it needs a header with the columns "
                               "model and step (or tokens)") from None
    df.columns = [str(c).strip() for c in df.columns]
    renames = {}
    for col in df.columns:
        for alias, name in TABLE_ALIASES.items():
            if col == alias or (col.startswith(alias + "_") and col[len(alias):] in SUFFIXES):
                renames[col] = name + col[len(alias):]
    clash = [c for c in renames.values() if c in df.columns]
    if clash:
        raise TableFormatError(f"{table_csv}: the table has both {clash[0]!r} and its held-out alias; keep one")
    df = df.rename(columns=renames)
    step_col = "step" if "step" in df else next((c for c in ("tokens", "tokens_B") if c in df), None)
    missing = [c for c, ok in (("model", "model" in df), ("step", step_col is not None)) if not ok]
    if missing:
        raise TableFormatError(f"{table_csv}: the table needs the column(s) {', '.join(missing)}"
                               f"{' (or tokens / tokens_B)' if 'step' in missing else ''}; it has: "
                               f"{', '.join(map(str, df.columns))}")
    if df.columns.duplicated().any():
        raise TableFormatError(f"{table_csv}: repeated column name(s): "
                               f"{', '.join(sorted(set(df.columns[df.columns.duplicated()])))}")
    metric_cols = [c for c in df.columns if _is_metric_column(c)]
    ignored = [c for c in df.columns if c not in _KEPT_ID_COLUMNS and c not in metric_cols
               and c not in TRAJECTORY_COLUMNS and c != "qc_flag"]
    if ignored:
        note(f"ignored column(s) that are not metrics of the spec: {', '.join(ignored)}")
    if not metric_cols:
        note("no metric column found; every statistic will be skipped")

    out = pd.DataFrame(index=df.index)
    out["suite"] = df["suite"].str.strip() if "suite" in df else "table"
    out.loc[out["suite"] == "", "suite"] = "table"
    out["model"] = df["model"].str.strip()
    if (out["model"] == "").any():
        first = int((out["model"] == "").to_numpy().nonzero()[0][0])
        raise TableFormatError(f"{table_csv}: column 'model' is empty at row {first + 1} (file line {first + 2})")
    split = [c for c in TRAJECTORY_COLUMNS if c in df]
    if split:
        keys = df[split].apply(lambda r: _trajectory_suffix(r.to_dict()), axis=1)
        per_model = keys.groupby([out["suite"], out["model"]]).transform("nunique")
        multi = per_model > 1
        if multi.any():
            out.loc[multi, "model"] = out.loc[multi, "model"] + "/" + keys[multi]
            names = sorted(set(out.loc[multi, "model"]))
            note(f"column(s) {', '.join(split)} split models into separate trajectories: {', '.join(names)}")
    for col in ("step", "tokens", "tokens_B"):
        if col in df:
            out[col] = _numeric_column(df, col, table_csv)
    for col in dict.fromkeys((step_col, "tokens", "tokens_B")):
        if col not in out:
            continue
        for bad, text in ((~np.isfinite(out[col]) if col == step_col else None, "has no finite value"),
                          (out[col] < 0, "is negative")):
            if bad is not None and bad.any():
                first = int(bad.to_numpy().nonzero()[0][0])
                raise TableFormatError(f"{table_csv}: column {col!r} {text} at row {first + 1} "
                                       f"(file line {first + 2}): {df[col].iloc[first]!r}; every row needs a "
                                       f"non-negative {'step' if col == 'step' else 'token count'}")
    if step_col != "step":
        out["step"] = out["tokens"] if "tokens" in out else out["tokens_B"] * 1e9
        note(f"no step column: the step is taken from {step_col} (the step is the token count"
             f"{', tokens_B x 1e9' if step_col == 'tokens_B' else ''})")
    if "tokens" not in out and "tokens_B" in out:
        out["tokens"] = out["tokens_B"] * 1e9
    if "tokens_B" not in out and "tokens" in out:
        out["tokens_B"] = out["tokens"] / 1e9
    if "revision" in df and (df["revision"].str.strip() != "").all():
        out["revision"] = df["revision"].str.strip()
    else:
        gen = ["step%d" % s if float(s).is_integer() else f"step{s:g}" for s in out["step"]]
        if "revision" in df:
            given = df["revision"].str.strip()
            gen = [g if r == "" else r for g, r in zip(gen, given)]
        out["revision"] = gen
    dup = out.duplicated(["suite", "model", "revision"], keep=False)
    if dup.any():  # same generated name twice in a model: number the repeats
        k = out.groupby(["suite", "model", "revision"]).cumcount()
        out.loc[dup & (k > 0), "revision"] = out["revision"] + "-" + (k + 1).astype(str)
    if "commit" in df:
        out["commit"] = df["commit"].str.strip()
    ids = [c for c in ("suite", "model", "revision", "step", "tokens", "tokens_B", "commit") if c in out]
    out = pd.concat([out[ids], pd.DataFrame({c: _numeric_column(df, c, table_csv) for c in metric_cols},
                                            index=df.index)], axis=1)
    out.attrs["notes"] = list(notes)
    return out.copy()  # one block, not a fragmented frame


def aggregate_table(table_csv, out_dir, stats_cfg: dict | None = None, figures: bool = True) -> dict:
    """``icl-probe aggregate --table FILE.csv --out DIR``: statistics from a ready-made table.

    table_csv: one row per (model, step), read by ``read_metric_table`` (which
    columns it takes, which it ignores with a note, and its errors). Runs the
    table QC checks (identical metric vectors, infinite and missing values,
    duplicate steps; weight and missing-checkpoint checks need a manifest; with
    no manifest to name aliases, ``main`` is taken as the final step and, for a
    model or suite named "pythia", ``step1`` as ``step0``: ``qc.alias_canonical``), then
    the statistics of every model not excluded (a partly measured one included);
    statistics whose columns are absent are listed under ``skipped``. Writes to
    out_dir: stats.json ({"models": {model: <as a model's stats.json>}, "notes":
    [what was ignored or assumed]}), qc.csv, summary.csv, forecast.json and
    (unless ``figures=False``) the figures. Returns paths by name.
    """
    cfg = settings(stats_cfg)
    out_dir = Path(out_dir)
    notes: list = []
    df = read_metric_table(table_csv, notes)
    models = []
    for (suite, model), t in df.groupby(["suite", "model"], sort=False):
        t = t.sort_values(["step", "revision"], kind="stable").reset_index(drop=True)
        issues = qc_mod.run_qc(t)
        t = t.assign(qc_flag=qc_mod.qc_flags(t, issues))
        models.append(ModelData(suite=suite, model=model, table=t, layers=None,
                                stats=_stats_record(suite, model, issues, t, cfg), issues=issues))
    if not models:
        raise TableFormatError(f"{table_csv}: the table has a header but no rows")
    stats = {"schema_version": SCHEMA_VERSION, "source": str(table_csv),
             "models": {md.model: md.stats for md in models}, "notes": notes}
    paths = {"stats": write_json(out_dir / "stats.json", stats)}
    paths.update(_write_suite_outputs(models, out_dir, cfg, figures))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m icl_probe.aggregate --table FILE.csv --out DIR`` (the CLI's aggregate --table)."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="icl-probe aggregate")
    p.add_argument("--table", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stats-settings", default="{}")
    a = p.parse_args(argv)
    aggregate_table(a.table, a.out, json.loads(a.stats_settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
