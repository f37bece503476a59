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

import pandas as pd

from icl_probe import SCHEMA_VERSION
from icl_probe.io import atomic_write, read_json, write_json
from icl_probe.plotting import ModelData, draw_all
from icl_probe.stats import qc as qc_mod
from icl_probe.stats.forecast import DEFAULT_PAIRS, forecast_across_models
from icl_probe.stats.model import model_statistics, settings, trajectory
from icl_probe.stats.table import (collect_checkpoint_results, load_manifest, probed_revisions,
                                   read_table, weight_fingerprints, write_tables)

log = logging.getLogger(__name__)

# Column names accepted by ``aggregate_table`` for the spec's metrics.
TABLE_ALIASES = {"heldout_induction_acc": "induction_acc", "heldout_ar_acc": "ar_acc",
                 "heldout_ar_logp": "ar_logp"}


def _stats_record(suite: str, model: str, issues: list[dict], table: pd.DataFrame, cfg: dict) -> dict:
    """stats.json content: statistics, or only the QC reasons when the model is excluded."""
    rec = {"schema_version": SCHEMA_VERSION, "suite": suite, "model": model,
           "excluded": bool(issues), "qc": issues}
    if issues:
        rec.update(statistics={}, skipped={"all": "excluded by quality control: " + qc_mod.qc_summary(issues)},
                   n_checkpoints=int(len(table)))
        return rec
    rec.update(model_statistics(table, cfg))
    return rec


def _qc_record(suite: str, model: str, issues: list[dict]) -> dict:
    return {"schema_version": SCHEMA_VERSION, "suite": suite, "model": model,
            "excluded": bool(issues), "issues": issues}


def aggregate_model(model_dir, manifest_path, stats_cfg: dict | None = None) -> dict[str, Path]:
    """Table, statistics and QC for one model.

    model_dir: ``results/{suite}/{model}`` holding ``{revision}/{probe}.json``;
    manifest_path: its manifest.json; stats_cfg: the config's ``stats`` section
    (optional ``probes``: the probes every revision must have). Writes
    table.csv, table.parquet, layers.csv, stats.json and qc.json into model_dir
    and returns their paths by name ("table", "parquet", "layers", "stats", "qc").
    """
    model_dir = Path(model_dir)
    cfg = settings(stats_cfg)
    manifest = load_manifest(str(manifest_path))
    table, layers = collect_checkpoint_results(model_dir, manifest)
    present = {e["revision"]: {p.stem for p in (model_dir / e["revision"]).glob("*.json")}
               for e in probed_revisions(manifest)}
    issues = qc_mod.run_qc(table, manifest, weight_fingerprints(model_dir, manifest), present,
                           cfg.get("probes"))
    table["qc_flag"] = qc_mod.qc_flags(table, issues)
    paths = write_tables(table, layers, model_dir)
    suite, model = manifest["suite"], manifest["model"]
    if issues:
        log.warning("%s/%s excluded by QC: %s", suite, model, qc_mod.qc_summary(issues))
    paths["stats"] = write_json(model_dir / "stats.json", _stats_record(suite, model, issues, table, cfg))
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
                     stats=stats, issues=qc.get("issues", stats.get("qc", [])))


def _qc_table(models: list[ModelData]) -> pd.DataFrame:
    rows = [{"suite": md.suite, "model": md.model, "reason": i["reason"], "revisions": ";".join(i["revisions"])}
            for md in models for i in md.issues]
    return pd.DataFrame(rows, columns=["suite", "model", "reason", "revisions"])


def _summary_table(models: list[ModelData]) -> pd.DataFrame:
    """One row per model: the headline statistics (NaN where undefined or excluded)."""
    rows = []
    for md in models:
        st = md.stats.get("statistics", {})
        g = lambda *keys: _dig(st, keys)  # noqa: E731
        rows.append({
            "suite": md.suite, "model": md.model, "excluded": bool(md.issues),
            "qc": qc_mod.qc_summary(md.issues), "n_checkpoints": md.stats.get("n_checkpoints"),
            "peak_er": g("peak_er"), "peak_step": g("peak_step"),
            "half_max_step": g("half_max_step", "interpolated"),
            "zero_crossing_step": g("zero_crossing", "interpolated"),
            "phases": g("phases", "label"), "er_decay": g("er_decay"), "sa_decay": g("sa_decay"),
            "lifecycle": g("lifecycle"), "co_emergence_lag": g("co_emergence_lag"),
            "rate_spearman": g("rate_agreement", "spearman"),
            "median_rate_rel_error": g("rate_agreement", "median_rate_rel_error"),
        })
    return pd.DataFrame(rows)


def _dig(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _forecasts(models: list[ModelData], cfg: dict) -> dict:
    trajs = {md.model: trajectory(md.table) for md in models if not md.issues and len(md.table)}
    pairs = [tuple(p) for p in cfg.get("forecast_pairs", DEFAULT_PAIRS)]
    out = {"schema_version": SCHEMA_VERSION, "forecast_step": cfg["forecast_step"],
           "models": sorted(trajs), "excluded": sorted(md.model for md in models if md.issues), "pairs": []}
    for feature, target in pairs:
        out["pairs"].append(forecast_across_models(trajs, feature, target, cfg["forecast_step"],
                                                   n_boot=cfg["bootstrap"], seed=cfg["seed"],
                                                   n_seeds=cfg["n_seeds"]))
    return out


def _write_suite_outputs(models: list[ModelData], out_dir: Path, cfg: dict, figures: bool = True) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict = {
        "qc": atomic_write(out_dir / "qc.csv", lambda p: _qc_table(models).to_csv(p, index=False)),
        "summary": atomic_write(out_dir / "summary.csv", lambda p: _summary_table(models).to_csv(p, index=False)),
        "forecast": write_json(out_dir / "forecast.json", _forecasts(models, cfg)),
    }
    if figures:
        paths["figures"] = draw_all(models, out_dir, cfg)
    return paths


def aggregate_suite(model_dirs, out_dir, stats_cfg: dict | None = None) -> dict:
    """Across models: QC table, summary, forecast and figures.

    model_dirs: folders already aggregated by ``aggregate_model`` (table.csv,
    layers.csv, stats.json, qc.json); out_dir: where to write qc.csv,
    summary.csv, forecast.json and ``{figure}.png``/``.pdf`` for every figure in
    ``icl_probe.plotting.FIGURES``. Returns paths by name; "figures" maps a
    figure name to {"paths": [png, pdf], "caption": text}.
    """
    cfg = settings(stats_cfg)
    models = [_load_model_dir(d) for d in model_dirs]
    return _write_suite_outputs(models, Path(out_dir), cfg)


def make_figures(model_dirs, out_dir, stats_cfg: dict | None = None) -> dict:
    """The ``icl-probe figures`` entry point: ``aggregate_suite``."""
    return aggregate_suite(model_dirs, out_dir, stats_cfg)


def read_metric_table(table_csv) -> pd.DataFrame:
    """Read a user table: one row per (model, step); heldout_* names mapped to the spec's.

    Requires columns ``model`` and ``step``; ``suite`` defaults to "table",
    ``revision`` to "step{step}", ``tokens`` to tokens_B x 1e9 when given.
    """
    df = pd.read_csv(table_csv, converters={c: str for c in ("suite", "model", "revision")})
    renames = {}
    for col in df.columns:
        for alias, name in TABLE_ALIASES.items():
            if col == alias or col.startswith(alias + "_"):
                renames[col] = name + col[len(alias):]
    df = df.rename(columns=renames)
    missing = [c for c in ("model", "step") if c not in df.columns]
    if missing:
        raise ValueError(f"{table_csv}: the table needs the column(s) {', '.join(missing)}; it has: "
                         f"{', '.join(map(str, df.columns))}")
    df["model"] = df["model"].astype(str)
    if df["step"].isna().any() or (df["step"] < 0).any():
        raise ValueError(f"{table_csv}: every row needs a non-negative step")
    if "suite" not in df:
        df.insert(0, "suite", "table")
    df["suite"] = df["suite"].astype(str)
    if "revision" not in df:
        df["revision"] = ["step%d" % s if float(s).is_integer() else f"step{s}" for s in df["step"]]
    df["revision"] = df["revision"].astype(str)
    if "tokens" not in df and "tokens_B" in df:
        df["tokens"] = df["tokens_B"] * 1e9
    if "tokens_B" not in df and "tokens" in df:
        df["tokens_B"] = df["tokens"] / 1e9
    if "qc_flag" in df:
        df = df.drop(columns="qc_flag")
    return df.copy()  # one block, not a fragmented frame


def aggregate_table(table_csv, out_dir, stats_cfg: dict | None = None, figures: bool = True) -> dict:
    """``icl-probe aggregate --table FILE.csv --out DIR``: statistics from a ready-made table.

    table_csv: one row per (model, step) with ``model``, ``step``, optional
    ``suite``, ``revision``, ``tokens_B`` and any spec metric columns (``<name>``,
    ``<name>_std``; ``heldout_induction_acc``, ``heldout_ar_acc``,
    ``heldout_ar_logp`` are read as induction_acc, ar_acc, ar_logp). Runs the
    table QC checks (identical metric vectors, non-finite values; weight and
    missing-checkpoint checks need a manifest), then the statistics; those whose
    columns are absent are listed under ``skipped``. Writes to out_dir:
    stats.json ({"models": {model: <as a model's stats.json>}}), qc.csv,
    summary.csv, forecast.json and (unless ``figures=False``) the figures.
    Returns paths by name.
    """
    cfg = settings(stats_cfg)
    out_dir = Path(out_dir)
    df = read_metric_table(table_csv)
    models = []
    for (suite, model), t in df.groupby(["suite", "model"], sort=False):
        t = t.sort_values("step", kind="stable").reset_index(drop=True)
        issues = qc_mod.run_qc(t)
        t = t.assign(qc_flag=qc_mod.qc_flags(t, issues))
        models.append(ModelData(suite=suite, model=model, table=t, layers=None,
                                stats=_stats_record(suite, model, issues, t, cfg), issues=issues))
    if not models:
        raise ValueError(f"{table_csv}: no rows")
    stats = {"schema_version": SCHEMA_VERSION, "source": str(table_csv),
             "models": {md.model: md.stats for md in models}}
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
