"""Per-checkpoint results -> the per-model table (one row per checkpoint) and layers table.

Reads ``results/{suite}/{model}/{revision}/{probe}.json`` (format in
docs/ARCHITECTURE.md) for the revisions of a manifest. The tables are plain
pandas DataFrames; writing them is ``write_tables``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from icl_probe import SCHEMA_VERSION
from icl_probe.io import atomic_write, read_json

PROBES = ("gd_readout", "induction", "attention_sinks", "associative_recall")

SCALARS = {
    "gd_readout": ("mean_err_embed", "mean_err_final", "error_reduction", "slope_alpha",
                   "intercept", "r", "r2", "sign_agreement", "depth_rho", "rho_pred",
                   "rho_obs", "rate_rel_error", "contracting_frac", "curvature_corr"),
    "induction": ("total_contraction", "rho2_per_layer", "geometric_fit_r2",
                  "monotone_improve_frac", "induction_acc", "induction_logp", "icl_score"),
    "attention_sinks": ("sink_rate_eps", "late_early_ratio"),
    "associative_recall": ("ar_acc", "ar_logp"),
}
METRICS = tuple(name for names in SCALARS.values() for name in names)

ID_COLUMNS = ("suite", "model", "revision", "step", "tokens", "tokens_B", "commit", "qc_flag")
LAYER_COLUMNS = ("suite", "model", "revision", "step", "metric", "layer", "value")
SUFFIXES = ("_std", "_ci_lo", "_ci_hi")


def load_manifest(manifest) -> dict:
    """A manifest given as a dict or a path to manifest.json."""
    return manifest if isinstance(manifest, dict) else read_json(manifest)


def probed_revisions(manifest: dict) -> list[dict]:
    """The manifest's revision entries that are probed (not marked ``duplicate_of``)."""
    return [e for e in manifest["revisions"] if not e.get("duplicate_of")]


def read_results(model_dir, revision: str) -> dict[str, dict]:
    """probe name -> parsed result for every ``{probe}.json`` in ``model_dir/revision``."""
    out = {}
    folder = Path(model_dir) / revision
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            res = read_json(path)
        except (ValueError, OSError) as e:
            raise DamagedResultError(f"unreadable result file {path} ({e}); recompute it: "
                                     f"snakemake --cores 2 --forcerun {path}") from None
        if isinstance(res, dict) and "probe" in res and "scalars" in res:
            check_schema_version(res, path)
            out[res["probe"]] = res
    return out


class DamagedResultError(ValueError):
    """A result file that does not parse (written by something other than icl-probe's atomic writes)."""

    user_facing = True


class StaleResultError(ValueError):
    """A result file written by another schema version: its numbers may mean something else."""

    user_facing = True


def check_schema_version(res: dict, path) -> None:
    found = res.get("schema_version")
    if found != SCHEMA_VERSION:
        raise StaleResultError(
            f"result file {path} has schema version {found}, but this icl-probe reads version "
            f"{SCHEMA_VERSION}; recompute it: snakemake --cores 2 --forcerun {path}")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _scalar_columns(scalars: dict) -> dict:
    """{"x": .., "x_std": .., "x_ci": [lo, hi]} -> {"x", "x_std", "x_ci_lo", "x_ci_hi"} floats."""
    row = {}
    for key, val in scalars.items():
        if key.endswith("_ci"):
            lo, hi = (val if isinstance(val, (list, tuple)) and len(val) == 2 else (None, None))
            row[key[:-3] + "_ci_lo"] = _num(lo)
            row[key[:-3] + "_ci_hi"] = _num(hi)
        elif isinstance(val, (int, float)) or val is None:
            row[key] = _num(val)
    return row


def metric_column_order(columns) -> list[str]:
    """Metric columns in spec order (probe by probe), each followed by _std, _ci_lo, _ci_hi;
    names the spec does not list come after, alphabetically."""
    cols = set(columns)
    bases = [m for m in METRICS if any(m + s in cols for s in ("",) + SUFFIXES)]
    extra = sorted({c for c in cols if not any(c == b + s for b in bases for s in ("",) + SUFFIXES)})
    ordered = [b + s for b in bases for s in ("",) + SUFFIXES if b + s in cols]
    return ordered + extra


def collect_checkpoint_results(model_dir, manifest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the per-model table and the long per-layer table.

    model_dir: ``results/{suite}/{model}``; manifest: dict or path. Only the
    manifest's probed revisions are read; revisions without any result are left
    out of the table (QC reports them). Returns (table, layers): table has one
    row per checkpoint ordered by step, columns ID_COLUMNS then the metrics
    (``<name>``, ``<name>_std``, ``<name>_ci_lo``, ``<name>_ci_hi``); layers has
    LAYER_COLUMNS. ``qc_flag`` is empty here (filled by QC).
    """
    manifest = load_manifest(manifest)
    rows, layer_rows = [], []
    for entry in probed_revisions(manifest):
        rev = entry["revision"]
        results = read_results(model_dir, rev)
        if not results:
            continue
        any_res = next(iter(results.values()))
        tokens = entry.get("tokens", any_res.get("tokens"))
        row = {
            "suite": manifest.get("suite", any_res.get("suite")),
            "model": manifest.get("model", any_res.get("model")),
            "revision": rev,
            "step": int(entry.get("step", any_res.get("step"))),
            "tokens": _num(tokens),
            "tokens_B": _num(tokens) / 1e9,
            "commit": entry.get("commit") or any_res.get("provenance", {}).get("commit") or "",
            "qc_flag": "",
        }
        for probe in sorted(results, key=lambda p: (PROBES.index(p) if p in PROBES else len(PROBES), p)):
            res = results[probe]
            row.update(_scalar_columns(res.get("scalars", {})))
            for metric, values in (res.get("per_layer") or {}).items():
                arr = np.asarray([_num(v) for v in values], dtype=float) if _is_flat(values) else None
                if arr is None:
                    continue
                for layer, val in enumerate(arr):
                    layer_rows.append({"suite": row["suite"], "model": row["model"], "revision": rev,
                                       "step": row["step"], "metric": metric, "layer": layer,
                                       "value": float(val)})
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else list(ID_COLUMNS))
    metric_cols = metric_column_order([c for c in table.columns if c not in ID_COLUMNS])
    table = table.reindex(columns=list(ID_COLUMNS) + metric_cols)
    table = table.sort_values(["step", "revision"], kind="stable").reset_index(drop=True)
    layers = pd.DataFrame(layer_rows, columns=list(LAYER_COLUMNS))
    layers = layers.sort_values(["step", "revision", "metric", "layer"], kind="stable").reset_index(drop=True)
    return table, layers


def _is_flat(values) -> bool:
    return isinstance(values, list) and all(v is None or isinstance(v, (int, float)) for v in values)


def read_per_prompt(model_dir, manifest) -> dict[str, dict]:
    """revision -> metric -> {"num", "den", "group"}: the per-prompt values the probes keep.

    From each result's ``per_prompt`` field (docs/ARCHITECTURE.md); ``group`` is
    the probe (metrics of one probe were read from the same prompts). Results
    without the field (older files, other tools) contribute nothing; the
    statistics then fall back to the table's mean/std/interval columns.
    """
    manifest = load_manifest(manifest)
    out: dict[str, dict] = {}
    for entry in probed_revisions(manifest):
        rev = entry["revision"]
        per = {}
        for probe, res in read_results(model_dir, rev).items():
            for name, rec in (res.get("per_prompt") or {}).items():
                if isinstance(rec, dict) and "num" in rec:
                    per[name] = {"num": rec["num"], "den": rec.get("den"), "group": probe}
        if per:
            out[rev] = per
    return out


def weight_fingerprints(model_dir, manifest) -> dict[str, str]:
    """revision -> one string fingerprint of its weights.

    From the manifest's file sha256 list where present, else from the results'
    ``provenance.weight_sha256``. Revisions with neither are left out.
    """
    manifest = load_manifest(manifest)
    out = {}
    for entry in manifest["revisions"]:
        rev = entry["revision"]
        shas = {f["path"]: f["sha256"] for f in entry.get("files") or [] if f.get("sha256")}
        if not shas:
            for res in read_results(model_dir, rev).values():
                shas = (res.get("provenance") or {}).get("weight_sha256") or {}
                if shas:
                    break
        if shas:
            out[rev] = ";".join(f"{k}={shas[k]}" for k in sorted(shas))
    return out


def read_table(path) -> pd.DataFrame:
    """Read a table.csv written by ``write_tables`` (revision, commit, qc_flag as strings)."""
    return pd.read_csv(path, dtype={"revision": str, "commit": str, "qc_flag": str,
                                    "suite": str, "model": str}, keep_default_na=True).fillna(
        {"commit": "", "qc_flag": ""})


def write_tables(table: pd.DataFrame, layers: pd.DataFrame, out_dir) -> dict[str, Path]:
    """Atomically write table.csv, table.parquet and layers.csv into ``out_dir``."""
    out_dir = Path(out_dir)
    return {
        "table": atomic_write(out_dir / "table.csv", lambda p: table.to_csv(p, index=False)),
        "parquet": atomic_write(out_dir / "table.parquet", lambda p: table.to_parquet(p, index=False)),
        "layers": atomic_write(out_dir / "layers.csv", lambda p: layers.to_csv(p, index=False)),
    }
