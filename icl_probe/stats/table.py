"""Per-checkpoint results -> the per-model table (one row per checkpoint) and layers table.

Reads ``results/{suite}/{model}/{revision}/{probe}.json`` (format in
docs/ARCHITECTURE.md) for the revisions of a manifest: exactly the result files
given (the workflow passes its inputs), or else the files of the probes named
(the stats settings' ``probes``, default our probes), never whatever JSON lies in
a revision folder (a disabled probe's old result, a prompt file). The tables are
plain pandas DataFrames; writing them is ``write_tables``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from icl_probe import SCHEMA_VERSION
from icl_probe.io import atomic_write, read_json
from icl_probe.probes import registry as _registry
from icl_probe.probes.base import ProbeDefinitionError

# Our probes (the registry's order) and their scalar outputs: the table's metric columns.
PROBES = tuple(_registry.BUILTIN)
SCALARS = dict(_registry.builtin_scalars())
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


# A model folder's prompt files (``prompts/{probe}.json``, and ``prompts.json`` of older
# versions) lie next to the revision folders: they are never results.
PROMPTS_NAMES = ("prompts", "prompts.json")


def _is_prompt_path(path: Path) -> bool:
    return path.name in PROMPTS_NAMES or path.parent.name in PROMPTS_NAMES


def group_result_paths(paths: Iterable) -> dict[str, list[Path]]:
    """Result files by revision: the name of the folder each lies in (prompt files left out)."""
    out: dict[str, list[Path]] = defaultdict(list)
    for path in map(Path, paths):
        if not _is_prompt_path(path):
            out[path.parent.name].append(path)
    return dict(out)


def result_paths(model_dir, revision: str, probes: Iterable[str] | None = None) -> list[Path]:
    """``model_dir/revision/{probe}.json`` for ``probes`` (default our probes, ``PROBES``)."""
    folder = Path(model_dir) / revision
    return [folder / f"{probe}.json" for probe in (PROBES if probes is None else probes)]


def read_results(model_dir, revision: str, probes: Iterable[str] | None = None,
                 paths: Iterable | None = None) -> dict[str, dict]:
    """probe name -> parsed result of one revision.

    ``paths``: exactly the files to read (the workflow's inputs); otherwise the files of
    ``probes`` in ``model_dir/revision`` (default our probes). A file that does not exist
    is left out (QC reports the revision); one without ``scalars`` (a duplicate's stub) too.
    """
    out = {}
    paths = result_paths(model_dir, revision, probes) if paths is None else [Path(p) for p in paths]
    for path in paths:
        if _is_prompt_path(path) or not path.is_file():
            continue
        try:
            res = read_json(path)
        except (ValueError, OSError) as e:
            raise DamagedResultError(f"unreadable result file {path} ({e}); recompute it: "
                                     f"snakemake --cores 2 --forcerun {path}") from None
        if isinstance(res, dict) and "probe" in res and "scalars" in res:
            check_schema_version(res, path)
            out[res["probe"]] = res
    return out


class ResultFiles:
    """Which result files of a model are read: ``results`` (the paths given, grouped by their
    revision folder) or, without them, ``{model_dir}/{revision}/{probe}.json`` of ``probes``
    (default our probes)."""

    def __init__(self, model_dir, results: Iterable | None = None, probes: Iterable[str] | None = None):
        self.model_dir = Path(model_dir)
        self.groups = None if results is None else group_result_paths(results)
        self.probes = None if probes is None else list(probes)

    def paths(self, revision: str) -> list[Path]:
        if self.groups is not None:
            return list(self.groups.get(revision, ()))
        return result_paths(self.model_dir, revision, self.probes)

    def read(self, revision: str) -> dict[str, dict]:
        return read_results(self.model_dir, revision, paths=self.paths(revision))


def _files(model_dir, results, probes) -> ResultFiles:
    if isinstance(results, ResultFiles):
        return results
    return ResultFiles(model_dir, results, probes)


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


def scalar_names(probe: str, result: dict | None = None, external: Iterable[str] = ()) -> tuple[str, ...]:
    """A probe's scalar outputs (its table columns): ours from ``SCALARS``, another probe's from
    the registry (with ``external``, the stats settings' ``probes.external``), failing that from
    the ``scalars`` keys of its result file (each ``x`` with its ``x_std``, ``x_ci``)."""
    if probe in SCALARS:
        return SCALARS[probe]
    try:
        return tuple(_registry.get(probe, tuple(external or ())).scalars)
    except ProbeDefinitionError:
        pass
    keys = list((result or {}).get("scalars") or {})
    derived = [k for k in keys if not any(k.endswith(s) and k[:-len(s)] in keys for s in ("_std", "_ci"))]
    return tuple(derived)


def metric_column_order(columns, extra: Iterable[str] = ()) -> list[str]:
    """Metric columns in spec order (probe by probe), each followed by _std, _ci_lo, _ci_hi;
    then ``extra`` (other probes' scalars, in that order) the same way; names neither lists
    come after, alphabetically."""
    cols = set(columns)
    known = tuple(dict.fromkeys(METRICS + tuple(extra)))
    bases = [m for m in known if any(m + s in cols for s in ("",) + SUFFIXES)]
    extra = sorted({c for c in cols if not any(c == b + s for b in bases for s in ("",) + SUFFIXES)})
    ordered = [b + s for b in bases for s in ("",) + SUFFIXES if b + s in cols]
    return ordered + extra


def _probe_order(probes: Iterable[str] | None):
    listed = list(probes or ())

    def key(p: str):
        if p in PROBES:
            return (0, PROBES.index(p), p)
        return (1, listed.index(p) if p in listed else len(listed), p)

    return key


def collect_checkpoint_results(model_dir, manifest, results: Iterable | None = None,
                               probes: Iterable[str] | None = None,
                               external: Iterable[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the per-model table and the long per-layer table.

    model_dir: ``results/{suite}/{model}``; manifest: dict or path. Only the
    manifest's probed revisions are read, from ``results`` (the result files to read,
    e.g. the workflow's inputs; grouped by their revision folder) or else from
    ``{model_dir}/{revision}/{probe}.json`` for ``probes`` (default our probes);
    revisions without any result are left out of the table (QC reports them).
    ``external``: the stats settings' ``external``, to name another probe's scalars.
    Returns (table, layers): table has one row per checkpoint ordered by step,
    columns ID_COLUMNS then the metrics (``<name>``, ``<name>_std``, ``<name>_ci_lo``,
    ``<name>_ci_hi``; ours in spec order, then other probes'); layers has
    LAYER_COLUMNS. ``qc_flag`` is empty here (filled by QC).
    """
    manifest = load_manifest(manifest)
    files = _files(model_dir, results, probes)
    order = _probe_order(probes)
    rows, layer_rows = [], []
    extra: dict[str, None] = {}
    for entry in probed_revisions(manifest):
        rev = entry["revision"]
        results_of = files.read(rev)
        if not results_of:
            continue
        any_res = next(iter(results_of.values()))
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
        for probe in sorted(results_of, key=order):
            res = results_of[probe]
            if probe not in SCALARS:
                extra.update(dict.fromkeys(scalar_names(probe, res, external)))
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
    metric_cols = metric_column_order([c for c in table.columns if c not in ID_COLUMNS], extra)
    table = table.reindex(columns=list(ID_COLUMNS) + metric_cols)
    table = table.sort_values(["step", "revision"], kind="stable").reset_index(drop=True)
    layers = pd.DataFrame(layer_rows, columns=list(LAYER_COLUMNS))
    layers = layers.sort_values(["step", "revision", "metric", "layer"], kind="stable").reset_index(drop=True)
    return table, layers


def _is_flat(values) -> bool:
    return isinstance(values, list) and all(v is None or isinstance(v, (int, float)) for v in values)


def read_per_prompt(model_dir, manifest, results: Iterable | None = None,
                    probes: Iterable[str] | None = None) -> dict[str, dict]:
    """revision -> metric -> {"num", "den", "group"}: the per-prompt values the probes keep.

    From each result's ``per_prompt`` field (docs/ARCHITECTURE.md); ``group`` is
    the probe (metrics of one probe were read from the same prompts). Results
    without the field (older files, other tools) contribute nothing; the
    statistics then fall back to the table's mean/std/interval columns. ``results`` and
    ``probes`` choose the files as in ``collect_checkpoint_results``.
    """
    manifest = load_manifest(manifest)
    files = _files(model_dir, results, probes)
    out: dict[str, dict] = {}
    for entry in probed_revisions(manifest):
        rev = entry["revision"]
        per = {}
        for probe, res in files.read(rev).items():
            for name, rec in (res.get("per_prompt") or {}).items():
                if isinstance(rec, dict) and "num" in rec:
                    per[name] = {"num": rec["num"], "den": rec.get("den"), "group": probe}
        if per:
            out[rev] = per
    return out


def weight_fingerprints(model_dir, manifest, results: Iterable | None = None,
                        probes: Iterable[str] | None = None) -> dict[str, str]:
    """revision -> one string fingerprint of its weights.

    From the manifest's file sha256 list where present, else from the results'
    ``provenance.weight_sha256``. Revisions with neither are left out. ``results`` and
    ``probes`` choose the files as in ``collect_checkpoint_results``.
    """
    manifest = load_manifest(manifest)
    files = _files(model_dir, results, probes)
    out = {}
    for entry in manifest["revisions"]:
        rev = entry["revision"]
        shas = {f["path"]: f["sha256"] for f in entry.get("files") or [] if f.get("sha256")}
        if not shas:
            for res in files.read(rev).values():
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
