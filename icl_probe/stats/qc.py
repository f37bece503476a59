"""Quality control of one model's trajectory: which checkpoints cannot be trusted.

A model is excluded from statistics (its raw results stay on disk) when any of
these holds (../shared/spec/metrics.md, "Quality control"):

- duplicate weights: two revisions resolve to the same weight files (manifest
  ``duplicate_of``, or equal weight sha256 fingerprints), other than the
  documented aliases: ``main`` and the final step, Pythia ``step0`` and ``step1``;
- identical metrics: three or more checkpoints (aliases counted once) give the
  same metric vector, probably one revision loaded several times;
- non-finite: a metric is NaN or infinite (the spec's nullable fit metrics,
  ``NULLABLE``, excepted);
- missing checkpoints: revisions that were requested but have no result (or
  lack some probe's result).

Every check returns a list of issues ``{"reason": str, "revisions": [str]}``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from icl_probe.stats.table import ID_COLUMNS, SUFFIXES

# Metrics the spec allows to be null (the geometric fit is undefined when the
# surprisal minimum is not at least two layers after its maximum).
NULLABLE = frozenset({"rho2_per_layer", "geometric_fit_r2"})


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The table's per-checkpoint metric means (no id, _std or _ci columns)."""
    return [c for c in table.columns
            if c not in ID_COLUMNS and not c.endswith(SUFFIXES)
            and pd.api.types.is_numeric_dtype(table[c])]


def is_pythia(suite: str | None, model: str | None, repo_id: str | None = None) -> bool:
    return any("pythia" in (x or "").lower() for x in (suite, model, repo_id))


def alias_canonical(revisions: list[tuple[str, int]], pythia: bool) -> dict[str, str]:
    """revision -> the name it is counted as: ``main`` -> the final step's revision,
    Pythia ``step1`` -> ``step0`` (when present); everything else -> itself.

    revisions: (name, step) pairs.
    """
    names = {r for r, _ in revisions}
    canon = {r: r for r in names}
    others = [(s, r) for r, s in revisions if r != "main" and s is not None and np.isfinite(s)]
    if "main" in names and others:
        canon["main"] = max(others)[1]
    if pythia and "step0" in names and "step1" in names:
        canon["step1"] = "step0"
    return canon


def duplicate_weights(manifest: dict | None, fingerprints: dict[str, str], canon: dict[str, str]) -> list[dict]:
    """Revisions sharing weights, aliases excepted.

    manifest: dict with ``revisions`` entries (``duplicate_of``) or None;
    fingerprints: revision -> weight fingerprint; canon: ``alias_canonical``.
    """
    c = lambda r: canon.get(r, r)  # noqa: E731
    groups: dict[str, set] = defaultdict(set)
    for entry in (manifest or {}).get("revisions", []):
        dup = entry.get("duplicate_of")
        if dup and c(dup) != c(entry["revision"]):
            groups[c(dup)].update({dup, entry["revision"]})
    by_fp: dict[str, set] = defaultdict(set)
    for rev, fp in fingerprints.items():
        by_fp[fp].add(rev)
    for revs in by_fp.values():
        if len({c(r) for r in revs}) >= 2:
            key = sorted(revs)[0]
            groups[key].update(revs)
    return [{"reason": "duplicate weights", "revisions": sorted(revs)}
            for revs in sorted(groups.values(), key=sorted)]


def identical_metric_vectors(table: pd.DataFrame, canon: dict[str, str] | None = None,
                             min_count: int = 3) -> list[dict]:
    """Groups of >= min_count checkpoints (aliases counted once) with equal metric vectors.

    Equality is exact over all metric means (NaN equals NaN); rows with no
    finite metric are not compared (``non_finite`` reports them).
    """
    cols = metric_columns(table)
    if not cols or table.empty:
        return []
    canon = canon or {}
    groups: dict[tuple, list] = defaultdict(list)
    for rev, vals in zip(table["revision"], table[cols].to_numpy(dtype=float)):
        if not np.isfinite(vals).any():
            continue
        key = tuple("nan" if not np.isfinite(v) else float(v) for v in vals)
        groups[key].append(rev)
    out = []
    for revs in groups.values():
        n = len({canon.get(r, r) for r in revs})
        if n >= min_count:
            out.append({"reason": f"identical metrics at {n} checkpoints", "revisions": sorted(revs)})
    return out


def non_finite(table: pd.DataFrame, skip=()) -> list[dict]:
    """Metric means that are NaN or infinite (NULLABLE metrics excepted), one issue per metric.

    skip: revisions not checked (those already reported missing a probe's result).
    """
    out = []
    checked = ~table["revision"].isin(list(skip)).to_numpy()
    for col in metric_columns(table):
        if col in NULLABLE:
            continue
        bad = ~np.isfinite(table[col].to_numpy(dtype=float)) & checked
        if bad.any():
            out.append({"reason": f"non-finite {col}", "revisions": sorted(table.loc[bad, "revision"])})
    return out


def missing_checkpoints(requested: list[str], present: dict[str, set], probes: list[str] | None = None) -> list[dict]:
    """Requested revisions with no result, or without every probe's result.

    requested: revision names to be probed; present: revision -> probe names with
    a result file; probes: the expected probes (default: every probe seen).
    """
    expected = set(probes) if probes else set().union(*present.values()) if present else set()
    missing = [r for r in requested if not present.get(r) or not expected <= set(present[r])]
    return [{"reason": "missing checkpoints", "revisions": sorted(missing)}] if missing else []


def run_qc(table: pd.DataFrame, manifest: dict | None = None, fingerprints: dict[str, str] | None = None,
           present: dict[str, set] | None = None, probes: list[str] | None = None) -> list[dict]:
    """All checks for one model. Without a manifest only the table checks run
    (identical metric vectors and non-finite values)."""
    suite = manifest.get("suite") if manifest else (table["suite"].iloc[0] if "suite" in table and len(table) else None)
    model = manifest.get("model") if manifest else (table["model"].iloc[0] if "model" in table and len(table) else None)
    pairs = [(e["revision"], e.get("step")) for e in manifest["revisions"]] if manifest else \
        list(zip(table["revision"], table["step"]))
    canon = alias_canonical(pairs, is_pythia(suite, model, manifest.get("repo_id") if manifest else None))
    issues = duplicate_weights(manifest, fingerprints or {}, canon)
    issues += identical_metric_vectors(table, canon)
    missing = []
    if manifest is not None and present is not None:
        requested = [e["revision"] for e in manifest["revisions"] if not e.get("duplicate_of")]
        missing = missing_checkpoints(requested, present, probes)
    issues += non_finite(table, skip=missing[0]["revisions"] if missing else ())
    return issues + missing


def qc_flags(table: pd.DataFrame, issues: list[dict]) -> pd.Series:
    """Per-row ``qc_flag``: the reasons (joined by "; ") of the issues naming that revision."""
    per_rev: dict[str, list] = defaultdict(list)
    for issue in issues:
        for rev in issue["revisions"]:
            per_rev[rev].append(issue["reason"])
    return table["revision"].map(lambda r: "; ".join(per_rev.get(r, []))).astype(object)


def qc_summary(issues: list[dict]) -> str:
    """A short text for legends: the distinct reasons joined by "; " ("" when clean)."""
    return "; ".join(dict.fromkeys(i["reason"] for i in issues))
