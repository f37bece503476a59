"""Quality control of one model's trajectory: which checkpoints cannot be trusted.

Every check returns a list of issues ``{"kind": str, "reason": str, "revisions": [str]}``
(docs/metrics.md, "Quality control"). ``kind`` is one of

- ``"excluded"``: the model is excluded from statistics (its raw results stay on
  disk). Exclusion happens iff some issue has this kind (``is_excluded``):

  - duplicate weights: two revisions resolve to the same weight files (manifest
    ``duplicate_of``, or equal weight sha256 fingerprints), other than aliases
    (reason ``"corrupt checkpoint (shards of another branch)"`` when a revision shares only
    some shards, as pythia-12b's step50000; ``details`` names each revision's fault):
    ``main`` and the final step, and a revision whose manifest entry
    has ``alias_of`` (the resolver sets it for documented pairs, Pythia's ``step1``
    of ``step0``); only a table without a manifest (``icl-probe aggregate
    --table``) has Pythia's ``step1`` -> ``step0`` guessed from the name;
  - identical metrics: three or more checkpoints (aliases counted once) repeat a
    whole metric vector of several non-trivial metrics, probably one revision
    loaded several times (``identical_metric_vectors`` says exactly when);
  - infinite values: a metric is +-inf;
  - missing checkpoints: revisions that were requested but have no result (or
    lack some probe's result).

- ``"partial"``: partly measured, not excluding. A metric column with empty/NaN
  cells (the spec's nullable fit metrics, ``NULLABLE``, excepted): one issue per
  column, reason ``"partly measured: <col>"``, revisions = those lacking it, and
  ``n_checkpoints`` = the number of checkpoints checked. Only the statistics that
  need that column at those checkpoints are lost.

- ``"note"``: flagged, not excluding: two non-alias rows with the same step
  (``"duplicate step <s>"``), or the identical-metric check not applicable
  because the model's columns are rounded.

Issues without ``kind`` (qc.json files written before kinds existed) count as
``"excluded"``. ``qc_status`` summarises a model as "excluded", "partly
measured" or "clean".
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pandas as pd

from icl_probe.stats.table import ID_COLUMNS, SUFFIXES

# Metrics the spec allows to be null (the geometric fit is undefined when the
# surprisal minimum is not at least two layers after its maximum).
NULLABLE = frozenset({"rho2_per_layer", "geometric_fit_r2"})

KINDS = ("excluded", "partial", "note")
ROUNDED_DECIMALS = 4
NOT_APPLICABLE_ROUNDED = "identical-metric check not applicable: rounded columns"
CORRUPT_SHARDS = "corrupt checkpoint (shards of another branch)"


def revision_order(rev: str) -> tuple:
    """Sort key: names in natural order (``step4`` before ``step16``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(rev)) if p)


def _issue(kind: str, reason: str, revisions, **extra) -> dict:
    revs = sorted(dict.fromkeys(str(r) for r in revisions), key=revision_order)
    return {"kind": kind, "reason": reason, "revisions": revs, **extra}


def issue_kind(issue: dict) -> str:
    """An issue's kind; "excluded" when it has none (written before kinds existed)."""
    return issue.get("kind") or "excluded"


def is_excluded(issues: list[dict]) -> bool:
    """Whether the model is excluded from statistics: some issue has kind "excluded"."""
    return any(issue_kind(i) == "excluded" for i in issues or [])


def is_partial(issues: list[dict]) -> bool:
    """Some column is partly measured (kind "partial")."""
    return any(issue_kind(i) == "partial" for i in issues or [])


def qc_status(issues: list[dict]) -> str:
    """"excluded", "partly measured" (not excluded, some column partly measured) or "clean"
    (no issue, or only notes)."""
    if is_excluded(issues):
        return "excluded"
    if is_partial(issues):
        return "partly measured"
    return "clean"


def partial_columns(issues: list[dict]) -> list[str]:
    """The columns named by "partly measured: <col>" issues, in issue order."""
    prefix = "partly measured: "
    return [i["reason"][len(prefix):] for i in issues or []
            if issue_kind(i) == "partial" and i["reason"].startswith(prefix)]


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The table's per-checkpoint metric means (no id, _std or _ci columns)."""
    return [c for c in table.columns
            if c not in ID_COLUMNS and not c.endswith(SUFFIXES)
            and pd.api.types.is_numeric_dtype(table[c])]


def is_pythia(suite: str | None, model: str | None, repo_id: str | None = None) -> bool:
    """Whether a name says Pythia: used only for tables without a manifest (``alias_canonical``)."""
    return any("pythia" in (x or "").lower() for x in (suite, model, repo_id))


def alias_canonical(revisions: list[tuple[str, int]], pythia: bool) -> dict[str, str]:
    """revision -> the name it is counted as: ``main`` -> the final step's revision,
    Pythia ``step1`` -> ``step0`` (when present); everything else -> itself.

    The name-based guess for a table without a manifest (``icl-probe aggregate
    --table``), where ``pythia`` comes from ``is_pythia``; with a manifest,
    ``manifest_canonical`` reads the aliases from its ``alias_of`` fields instead.
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


def manifest_canonical(manifest: dict) -> dict[str, str]:
    """revision -> the name it is counted as, from the manifest: a revision whose
    ``alias_of`` names another revision is counted as that one (followed through
    chains), ``main`` as the final step's revision (the documented alias, as in
    ``alias_canonical``); everything else -> itself. No guess from the model's name."""
    entries = manifest.get("revisions", [])
    canon = alias_canonical([(e["revision"], e.get("step")) for e in entries], pythia=False)
    alias_of = {e["revision"]: e["alias_of"] for e in entries
                if e.get("alias_of") and e["alias_of"] != e["revision"]}
    for rev in alias_of:
        seen, target = {rev}, alias_of[rev]
        while target in alias_of and alias_of[target] not in seen:  # a chain; a cycle stops
            seen.add(target)
            target = alias_of[target]
        canon[rev] = canon.get(target, target)
    return canon


def duplicate_weights(manifest: dict | None, fingerprints: dict[str, str], canon: dict[str, str]) -> list[dict]:
    """Revisions sharing weights, aliases excepted (kind "excluded").

    manifest: dict with ``revisions`` entries (``duplicate_of``) or None;
    fingerprints: revision -> weight fingerprint; canon: ``manifest_canonical`` or
    ``alias_canonical``.

    A group whose manifest entries say (``integrity``) that some are only partly another
    branch's (``"corrupt: shard 1 of 3 is X's"``) has reason ``CORRUPT_SHARDS``; one of
    full duplicates ``"duplicate weights"``. ``details`` maps each flagged revision to what is
    wrong with it (``"duplicate of X"`` or the corrupt text).
    """
    c = lambda r: canon.get(r, r)  # noqa: E731
    groups: dict[tuple[str, bool], set] = defaultdict(set)
    details: dict[str, str] = {}
    for entry in (manifest or {}).get("revisions", []):
        dup = entry.get("duplicate_of")
        if dup and c(dup) != c(entry["revision"]):
            details[entry["revision"]] = entry.get("integrity") or f"duplicate of {dup}"
            groups[(c(dup), details[entry["revision"]].startswith("corrupt"))].update({dup, entry["revision"]})
    by_fp: dict[str, set] = defaultdict(set)
    for rev, fp in fingerprints.items():
        by_fp[fp].add(rev)
    for revs in by_fp.values():
        if len({c(r) for r in revs}) >= 2:
            # the manifest's group of these revisions, if it has one: one issue per group
            key = next((k for k, g in groups.items() if not k[1] and g & revs), (sorted(revs)[0], False))
            groups[key].update(revs)
    out = []
    for (_, corrupt), revs in sorted(groups.items(), key=lambda kv: (kv[0][1], sorted(kv[1]))):
        said = {r: details[r] for r in sorted(revs, key=revision_order) if r in details
                and details[r].startswith("corrupt") == corrupt}
        out.append(_issue("excluded", CORRUPT_SHARDS if corrupt else "duplicate weights", revs,
                          **({"details": said} if said else {})))
    return out


def rounded_column(values: np.ndarray, decimals: int = ROUNDED_DECIMALS) -> bool:
    """Whether every finite value equals itself rounded to ``decimals`` decimals (up to
    float noise: 1e-9 relative); a column with no finite value is not "rounded"."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return False
    return bool(np.all(np.abs(v - np.round(v, decimals)) <= 1e-9 * np.maximum(1.0, np.abs(v))))


def comparable_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(non-trivial, rounded) metric columns for the identical-metric check: non-trivial
    columns have a finite value and are not ``rounded_column``; rounded ones are set aside."""
    keep, rounded = [], []
    for col in metric_columns(table):
        vals = table[col].to_numpy(dtype=float)
        if not np.isfinite(vals).any():
            continue
        (rounded if rounded_column(vals) else keep).append(col)
    return keep, rounded


def identical_metric_vectors(table: pd.DataFrame, canon: dict[str, str] | None = None,
                             min_count: int = 3, min_columns: int = 3) -> list[dict]:
    """Checkpoints that repeat a whole metric vector (kind "excluded"), or a note that
    the check cannot tell.

    Precisely: only the model's non-trivial columns are compared
    (``comparable_columns``: not all-NaN, and not rounded, i.e. not every finite
    value equal to itself rounded to 4 decimals; a table published to 2-3
    decimals has flat plateaus such as ER 0.00 with SA 0.50 that are real data).
    Two rows *repeat* each other when, over the non-trivial columns finite at
    both rows, they are exactly equal at every one and there are at least
    ``min_columns`` (3) such columns (NaN never counts as equal). Rows linked by
    repeats form a group; a group of ``min_count`` (3) or more checkpoints
    (aliases such as ``main`` and the final step counted once) is reported as
    "identical metrics at <n> checkpoints" naming its revisions.

    When fewer than ``min_columns`` non-trivial columns exist because the others
    are rounded, the check cannot tell: a "note" issue
    "identical-metric check not applicable: rounded columns" (no revisions).
    """
    if table.empty:
        return []
    cols, rounded = comparable_columns(table)
    if len(cols) < min_columns:
        return [_issue("note", NOT_APPLICABLE_ROUNDED, [])] if rounded else []
    canon = canon or {}
    revs = [str(r) for r in table["revision"]]
    vals = table[cols].to_numpy(dtype=float)
    fin = np.isfinite(vals)
    n = len(revs)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        if fin[i].sum() < min_columns:
            continue
        both = fin[i] & fin[i + 1:]
        equal = (vals[i] == vals[i + 1:]) | ~both
        for k in np.nonzero(both.sum(axis=1) >= min_columns)[0]:
            if equal[k].all():
                parent[find(i + 1 + k)] = find(i)
    groups: dict[int, list] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(revs[i])
    out = []
    for members in groups.values():
        distinct = len({canon.get(r, r) for r in members})
        if len(members) > 1 and distinct >= min_count:
            out.append(_issue("excluded", f"identical metrics at {distinct} checkpoints", members))
    return sorted(out, key=lambda i: i["revisions"])


def infinite_values(table: pd.DataFrame, skip=()) -> list[dict]:
    """Metric means that are +-inf, one "excluded" issue per metric ("infinite <col>").

    skip: revisions not checked (those already reported missing a probe's result).
    """
    out = []
    checked = ~table["revision"].isin(list(skip)).to_numpy()
    for col in metric_columns(table):
        bad = np.isinf(table[col].to_numpy(dtype=float)) & checked
        if bad.any():
            out.append(_issue("excluded", f"infinite {col}", table.loc[bad, "revision"]))
    return out


def partly_measured(table: pd.DataFrame, skip=()) -> list[dict]:
    """Metric columns with NaN/empty cells (NULLABLE metrics excepted): one "partial"
    issue per column, reason "partly measured: <col>", revisions = the checkpoints
    lacking it, ``n_checkpoints`` = the checkpoints checked.

    skip: revisions not checked (those already reported missing a probe's result).
    """
    out = []
    checked = ~table["revision"].isin(list(skip)).to_numpy()
    for col in metric_columns(table):
        if col in NULLABLE:
            continue
        bad = np.isnan(table[col].to_numpy(dtype=float)) & checked
        if bad.any():
            out.append(_issue("partial", f"partly measured: {col}", table.loc[bad, "revision"],
                              n_checkpoints=int(checked.sum())))
    return out


def non_finite(table: pd.DataFrame, skip=()) -> list[dict]:
    """``infinite_values`` (excluded) then ``partly_measured`` (partial)."""
    return infinite_values(table, skip) + partly_measured(table, skip)


def _fmt_step(s) -> str:
    s = float(s)
    return str(int(s)) if s.is_integer() else f"{s:g}"


def duplicate_steps(table: pd.DataFrame, canon: dict[str, str] | None = None) -> list[dict]:
    """Two or more rows with the same step that are not aliases of each other (after
    ``manifest_canonical`` / ``alias_canonical``): a "note" issue "duplicate step <s>"
    naming the revisions, in step order. Only flagged: the statistics keep one row deterministically."""
    if table.empty or "step" not in table:
        return []
    canon = canon or {}
    by_step: dict[float, set] = defaultdict(set)
    for rev, step in zip(table["revision"], table["step"].to_numpy(dtype=float)):
        if np.isfinite(step):
            by_step[float(step)].add(str(rev))
    out = []
    for step in sorted(by_step):
        revs = by_step[step]
        if len({canon.get(r, r) for r in revs}) >= 2:
            out.append(_issue("note", f"duplicate step {_fmt_step(step)}", revs))
    return out


def missing_checkpoints(requested: list[str], present: dict[str, set], probes: list[str] | None = None) -> list[dict]:
    """Requested revisions with no result, or without every probe's result (kind "excluded").

    requested: revision names to be probed; present: revision -> probe names with
    a result file; probes: the expected probes (default: every probe seen).
    """
    expected = set(probes) if probes else set().union(*present.values()) if present else set()
    missing = [r for r in requested if not present.get(r) or not expected <= set(present[r])]
    return [_issue("excluded", "missing checkpoints", missing)] if missing else []


def run_qc(table: pd.DataFrame, manifest: dict | None = None, fingerprints: dict[str, str] | None = None,
           present: dict[str, set] | None = None, probes: list[str] | None = None) -> list[dict]:
    """All checks for one model. Without a manifest only the table checks run
    (identical metric vectors, infinite and missing values, duplicate steps).
    The result does not depend on the order of the table's rows.

    Aliases (counted as one checkpoint): with a manifest, its ``alias_of`` fields and
    ``main`` = the final step (``manifest_canonical``), whatever the model is called;
    without one (``icl-probe aggregate --table``), ``main`` = the final step and, when
    the suite or model name contains "pythia", ``step1`` = ``step0`` (``alias_canonical``).
    """
    if manifest is not None:
        canon = manifest_canonical(manifest)
    else:
        suite = table["suite"].iloc[0] if "suite" in table and len(table) else None
        model = table["model"].iloc[0] if "model" in table and len(table) else None
        steps = table["step"] if "step" in table else [None] * len(table)
        canon = alias_canonical(list(zip(table["revision"], steps)), is_pythia(suite, model))
    if len(table) and "step" in table and "revision" in table:  # row order must not matter
        table = table.sort_values(["step", "revision"], kind="stable").reset_index(drop=True)
    issues = duplicate_weights(manifest, fingerprints or {}, canon)
    issues += identical_metric_vectors(table, canon)
    missing = []
    if manifest is not None and present is not None:
        requested = [e["revision"] for e in manifest["revisions"] if not e.get("duplicate_of")]
        missing = missing_checkpoints(requested, present, probes)
    skip = missing[0]["revisions"] if missing else ()
    issues += infinite_values(table, skip)
    issues += missing
    issues += partly_measured(table, skip)
    issues += duplicate_steps(table, canon)
    return issues


def qc_flags(table: pd.DataFrame, issues: list[dict]) -> pd.Series:
    """Per-row ``qc_flag``: the reasons (joined by "; ") of the issues naming that revision."""
    per_rev: dict[str, list] = defaultdict(list)
    for issue in issues:
        for rev in issue["revisions"]:
            per_rev[rev].append(issue["reason"])
    return table["revision"].map(lambda r: "; ".join(per_rev.get(r, []))).astype(object)


def _partial_text(issue: dict) -> str:
    col = issue["reason"].removeprefix("partly measured: ")
    n = issue.get("n_checkpoints")
    k = len(issue["revisions"])
    return f"{col} ({k} of {n} checkpoints missing)" if n else f"{col} ({k} checkpoints missing)"


def excluded_reasons(issues: list[dict]) -> str:
    """The distinct reasons of the excluding issues, joined by "; " ("" when not excluded)."""
    return "; ".join(dict.fromkeys(i["reason"] for i in issues or [] if issue_kind(i) == "excluded"))


def excluded_details(issues: list[dict], limit: int = 6) -> str:
    """Like ``excluded_reasons``, each reason followed by the revisions it names where the issue
    has ``details`` (duplicate and corrupt checkpoints), at most ``limit`` a reason, e.g.
    "duplicate weights: step1000 duplicate of step2000; corrupt checkpoint (shards of another
    branch): step50000 corrupt: shard 1 of 3 is step143000's"."""
    by_reason: dict[str, dict[str, str]] = {}
    for i in issues or []:
        if issue_kind(i) == "excluded":
            by_reason.setdefault(i["reason"], {}).update(i.get("details") or {})
    parts = []
    for reason, det in by_reason.items():
        items = [f"{r} {t}" for r, t in det.items()]
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        parts.append(reason + (": " + ", ".join(items[:limit]) + more if items else ""))
    return "; ".join(parts)


def qc_summary(issues: list[dict]) -> str:
    """A short text for legends and tables ("" when there is no issue), e.g.
    "excluded: infinite ar_acc; partly measured: induction_acc (10 of 12 checkpoints
    missing); note: duplicate step 4000"."""
    parts = []
    exc = list(dict.fromkeys(i["reason"] for i in issues or [] if issue_kind(i) == "excluded"))
    if exc:
        parts.append("excluded: " + ", ".join(exc))
    part = [_partial_text(i) for i in issues or [] if issue_kind(i) == "partial"]
    if part:
        parts.append("partly measured: " + ", ".join(part))
    notes = list(dict.fromkeys(i["reason"] for i in issues or [] if issue_kind(i) == "note"))
    if notes:
        parts.append("note: " + ", ".join(notes))
    return "; ".join(parts)
