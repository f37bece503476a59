"""Adaptive refinement: probe the branches where a transition lies, not the whole schedule.

After the coarse selection of a model is probed, each requested transition has a
*bracket*: the two analysed checkpoints it lies between (``half_max``: ER reaches
half its peak; ``zero_crossing``: ER recovers to 0 after its valley; ``induction``:
the half rise of induction_acc). A round probes, for every bracket that still has
branches of the suite inside it, the branch nearest the bracket's middle in log10
step (bisection over the branches that exist; duplicated and aliased weights are
never picked), then the statistics are computed again. Rounds stop when every
transition is bracketed by adjacent branches (or the configured resolution is met),
is undefined, or the budget of added checkpoints is spent. The workflow runs the
rounds as Snakemake checkpoint jobs (rules/refine.smk); this module is the pure
decision (``plan_round``) and the round's record (``refine_round``).
Definitions: docs/refinement.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icl_probe import SCHEMA_VERSION
from icl_probe.stats.axis import left_edge, log_step

TRANSITIONS = ("half_max", "zero_crossing", "induction")
DEFAULTS = {"transitions": list(TRANSITIONS), "resolution": "adjacent", "budget": 12}


def transition_bracket(stats: dict, name: str) -> tuple[list[float] | None, str | None]:
    """The bracket [lo, hi] (steps) of transition ``name`` in a stats.json record, or
    (None, why) when the statistic is null or has no bracket."""
    if stats.get("excluded"):
        return None, "excluded by quality control"
    st, null, skipped = stats.get("statistics", {}), stats.get("null", {}), stats.get("skipped", {})
    if "all" in skipped:
        return None, skipped["all"]
    if name == "half_max":
        if st.get("half_max_step") is None:
            return None, null.get("half_max_step") or skipped.get("emergence") or "half_max_step is null"
        return st.get("half_max_bracket"), None if st.get("half_max_bracket") else (
            "at or above half max at the first checkpoint: no bracket")
    if name == "zero_crossing":
        lo, hi = st.get("zero_crossing_lo"), st.get("zero_crossing_hi")
        if lo is None or hi is None:
            return None, (null.get("zero_crossing_lo") or skipped.get("emergence")
                          or (st.get("phases") or {}).get("note") or "no zero crossing")
        return [lo, hi], None
    if name == "induction":
        it = st.get("induction_transition")
        if not it:
            return None, skipped.get("induction_transition") or "no induction_acc column"
        if not it.get("defined") or not it.get("bracket"):
            return None, it.get("note") or "no bracket"
        return it["bracket"], None
    raise ValueError(f"unknown transition {name!r}; known: {', '.join(TRANSITIONS)}")


def split_point(pool: dict[str, int], lo: float, hi: float, taken, edge: float) -> str | None:
    """The branch of ``pool`` (revision -> step) strictly inside (lo, hi), not in ``taken``,
    nearest the bracket's middle in log10 step (step 0 at ``edge``; ties: the smaller step)."""
    inside = [(r, s) for r, s in pool.items() if lo < s < hi and r not in taken]
    if not inside:
        return None
    x_lo, x_hi = log_step([lo, hi], edge)
    mid = 0.5 * (x_lo + x_hi)
    xs = log_step([s for _, s in inside], edge)
    best = min(range(len(inside)), key=lambda i: (abs(xs[i] - mid), inside[i][1], inside[i][0]))
    return inside[best][0]


def bracket_status(bracket, pool: dict[str, int], taken, resolution) -> str:
    """"adjacent" (no branch of the suite inside), "resolution" (hi <= r x lo), "exhausted"
    (every branch inside is analysed but not measured) or "open"."""
    lo, hi = bracket
    inside = [r for r, s in pool.items() if lo < s < hi]
    if not inside:
        return "adjacent"
    if resolution != "adjacent" and lo > 0 and hi <= float(resolution) * lo:
        return "resolution"
    if all(r in taken for r in inside):
        return "exhausted"
    return "open"


def plan_round(stats: dict, pool: dict[str, int], analysed: list[str], transitions, resolution,
               budget_left: int, edge: float | None = None) -> tuple[list[str], dict[str, dict]]:
    """The branches one round adds, and each transition's state.

    stats: the stats.json record of the analysed checkpoints; pool: revision -> step of the
    branches that may be added (no duplicates or aliases); analysed: the revisions probed so
    far; budget_left: how many may still be added. Returns (added, {transition: {"bracket",
    "status", "note", "split"}}); status is adjacent | resolution | refining | budget spent |
    exhausted | undefined. Two transitions in one bracket share its split.
    """
    edge = left_edge(list(pool.values())) if edge is None else edge
    taken = set(analysed)
    added: list[str] = []
    state: dict[str, dict] = {}
    for name in transitions:
        bracket, why = transition_bracket(stats, name)
        if bracket is None:
            state[name] = {"bracket": None, "status": "undefined", "note": why, "split": None}
            continue
        status = bracket_status(bracket, pool, taken, resolution)
        split = None
        if status == "open":
            split = split_point(pool, bracket[0], bracket[1], taken, edge)
            if split in added:
                status = "refining"
            elif len(added) < budget_left:
                added.append(split)
                status = "refining"
            else:
                split, status = None, "budget spent"
        state[name] = {"bracket": [float(b) for b in bracket], "status": status, "note": why, "split": split}
    return added, state


def pool_of(manifest: dict) -> dict[str, int]:
    """revision -> step of the manifest's branches a round may add: not a duplicate or an alias."""
    return {e["revision"]: int(e["step"]) for e in manifest["revisions"]
            if not e.get("duplicate_of") and not e.get("alias_of")}


def refine_round(manifest: dict, stats: dict, *, round_no: int, coarse: list[str], previous: dict | None,
                 settings: dict) -> dict:
    """The record of refinement round ``round_no`` (refine/round{N}.json).

    manifest: the model's manifest (every branch of the range); stats: the stats.json record
    of the revisions analysed so far (``previous["analysed"]``, or ``coarse`` for round 1);
    settings: the model's ``refine`` section. ``analysed`` is what the next round (or, when
    ``done``, the aggregate step) reads: the revisions so far plus ``added``.
    """
    cfg = {**DEFAULTS, **(settings or {})}
    analysed = list(previous["analysed"] if previous else coarse)
    refined = list(previous["refined"] if previous else [])
    budget_left = int(cfg["budget"]) - len(refined)
    added, state = plan_round(stats, pool_of(manifest), analysed, cfg["transitions"], cfg["resolution"],
                              budget_left)
    refined += added
    analysed += added
    steps = {e["revision"]: e["step"] for e in manifest["revisions"]}
    analysed.sort(key=lambda r: (steps.get(r, math.inf), r))
    return {
        "schema_version": SCHEMA_VERSION, "suite": manifest.get("suite"), "model": manifest.get("model"),
        "round": int(round_no), "settings": cfg, "done": not added,
        "transitions": state, "added": added, "refined": refined, "coarse": list(coarse),
        "analysed": analysed, "n_checkpoints": len(analysed),
        # a dense sweep of the same range: every branch between the first and last coarse step
        "n_dense": _n_dense(manifest, coarse),
        "budget": int(cfg["budget"]), "budget_used": len(refined),
    }


def _n_dense(manifest: dict, coarse: list[str]) -> int:
    steps = {e["revision"]: e["step"] for e in manifest["revisions"]}
    cs = [steps[r] for r in coarse if r in steps]
    if not cs:
        return 0
    lo, hi = min(cs), max(cs)
    return int(np.sum([(lo <= s <= hi) for s in steps.values()]))


def resolve_selection(rec: dict[str, Any], coarse: list[str]) -> Any:
    """What the resolve step resolves for a model: its selection, or with ``refine`` every
    branch between its first and last coarse step (``range:A-B``), so a round can add any."""
    if not rec.get("refine") or not coarse:
        return rec.get("revisions", "all")
    from icl_probe.hub.suites import parse_revision

    steps = [parse_revision(r)[0] for r in coarse]
    return f"range:{min(steps)}-{max(steps)}"


def progress_line(model_dir, suite: str, model: str, coarse: list[str], settings: dict) -> str | None:
    """One line saying where a model's refinement stands, from the round files on disk (None
    when its last round is done): printed when the workflow starts, dry runs included, since
    the DAG a dry run shows ends at the next round."""
    import json
    from pathlib import Path

    cfg = {**DEFAULTS, **(settings or {})}
    rounds = []
    n = 1
    while (path := Path(model_dir) / "refine" / f"round{n}.json").exists():
        try:
            rounds.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            break
        n += 1
    what = f"to bracket {', '.join(cfg['transitions'])} (budget {cfg['budget']} checkpoints)"
    if not rounds:
        return (f"{suite}/{model}: refinement follows the coarse pass of {len(coarse)} checkpoints: "
                f"rounds add branches {what}; the DAG grows as each round finishes")
    last = rounds[-1]
    if last.get("done"):
        return None
    return (f"{suite}/{model}: refinement round {n} follows ({last['n_checkpoints']} checkpoints so far, "
            f"{last['budget_used']} of {cfg['budget']} added) {what}")
