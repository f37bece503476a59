"""Which checkpoints of a model to analyse: a selection spec applied to its branch names."""

from __future__ import annotations

import math
import re
from typing import Sequence

from icl_probe.hub.errors import revision_not_found
from icl_probe.hub.suites import parse_revision

SELECTION_FORMS = (
    '"all", "log:N" (N log-spaced by step, first and last kept), "every:K" (every K-th branch '
    'from the first), "range:A-B" (steps A..B inclusive), or a list of revision names'
)
_LOG_RE = re.compile(r"^log:([1-9]\d*)$")
_EVERY_RE = re.compile(r"^every:([1-9]\d*)$")
_RANGE_RE = re.compile(r"^range:(\d+)-(\d+)$")


def select_revisions(revisions: Sequence[str], spec: str | Sequence[str], *, repo_id: str = "") -> list[str]:
    """The revisions that ``spec`` selects, ordered by step (ties by name), without duplicates.

    ``revisions`` are checkpoint branch names (``parse_revision`` must accept each). ``spec``:

    - ``"all"``: every revision;
    - ``"log:N"``: N revisions log-spaced by step (on log(1 + step)), always the first and the
      last; fewer only if there are fewer revisions;
    - ``"every:K"``: the 1st, (K+1)-th, (2K+1)-th ... in step order;
    - ``"range:A-B"``: those with A <= step <= B;
    - a list of names: exactly those (each must exist, else ``RevisionNotFoundError`` naming
      the closest).

    A malformed spec raises ``ValueError`` naming it and the allowed forms.
    """
    ordered = sorted({r: parse_revision(r)[0] for r in revisions}.items(), key=lambda kv: (kv[1], kv[0]))
    names = [r for r, _ in ordered]
    steps = [s for _, s in ordered]

    if not isinstance(spec, str):
        if not isinstance(spec, (list, tuple)) or not all(isinstance(s, str) for s in spec) or not spec:
            raise ValueError(f"invalid revision selection {spec!r}: expected {SELECTION_FORMS}")
        known = set(names)
        for name in spec:
            if name not in known:
                raise revision_not_found(repo_id or "the branch list", name, names)
        wanted = set(spec)
        return [r for r in names if r in wanted]

    spec_s = spec.strip()
    if spec_s == "all":
        return names
    if m := _LOG_RE.fullmatch(spec_s):
        return [names[i] for i in _log_spaced_indices(steps, int(m.group(1)))]
    if m := _EVERY_RE.fullmatch(spec_s):
        return names[:: int(m.group(1))]
    if m := _RANGE_RE.fullmatch(spec_s):
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise ValueError(f"invalid revision selection {spec!r}: range start {lo} is after its end {hi}")
        return [r for r, s in zip(names, steps) if lo <= s <= hi]
    raise ValueError(f"invalid revision selection {spec!r}: expected {SELECTION_FORMS}")


def _log_spaced_indices(steps: Sequence[int], n: int) -> list[int]:
    """Indices of ``n`` items of sorted ``steps`` spread evenly on log(1 + step).

    Targets are ``n`` evenly spaced points between the first and the last item on that scale;
    each takes the nearest item not yet taken. When several targets fall on one item (dense
    regions are sparse in steps), the remaining picks fill the largest gaps, so the result has
    ``min(n, len(steps))`` items, the first and the last always among them.
    """
    m = len(steps)
    if m == 0:
        return []
    if n >= m:
        return list(range(m))
    x = [math.log1p(s) for s in steps]
    if n == 1:
        return [m - 1]
    lo, hi = x[0], x[-1]
    chosen = {0, m - 1}
    for k in range(1, n - 1):
        t = lo + (hi - lo) * k / (n - 1)
        i = min(range(m), key=lambda j: (abs(x[j] - t), j))
        chosen.add(i)
    while len(chosen) < n:  # fill: the free item farthest (on the log scale) from every chosen one
        sel = sorted(chosen)
        best, best_d = None, -1.0
        for j in range(m):
            if j in chosen:
                continue
            d = min(abs(x[j] - x[c]) for c in sel)
            if d > best_d + 1e-12:
                best, best_d = j, d
        chosen.add(best)
    return sorted(chosen)
