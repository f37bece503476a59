"""Which revisions of a model the workflow analyses, known when the DAG is built.

The DAG holds one probe job per selected revision, so a dry run
(``snakemake -n``) shows the whole sweep without downloading anything. The
candidate branches come from where they can be had without the network:

- ``minisuite``: the builder's checkpoint schedule;
- ``local``: the ``refs/`` of the Hub cache on disk;
- ``hub`` with ``branch_list: recorded``: the list shipped in ``icl_probe/data/branches``;
- ``hub`` with ``branch_list: live``: the Hub's branch list, read once and kept in
  ``{results}/{suite}/{model}/branches.txt`` so later runs (and cluster jobs) reuse it.

The resolve step then checks every selected revision against its source and
flags duplicated weights in the manifest; the fetch and probe jobs of a
duplicate do nothing but say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icl_probe.hub.resolve import hub_branches, local_branches
from icl_probe.hub.selection import select_revisions
from icl_probe.hub.suites import checkpoint_revisions, read_branch_list
from icl_probe.io import write_text


def candidate_branches(rec: dict[str, Any], *, minisuite_cache: str | None = None,
                       results_dir: str = "results") -> list[str]:
    """All branch names of a model's source (checkpoints and others)."""
    source = rec["source"]
    if source == "minisuite":
        from icl_probe.minisuite.build import MODELS, branch_name, schedule

        name = rec["repo_id"].split("/", 1)[1]
        spec = MODELS[name]
        return [branch_name(name, s) for s in schedule(spec.final_step, spec.interval)]
    if source == "local":
        return list(local_branches(rec["cache_dir"], rec["repo_id"]))
    if rec.get("branch_list") == "recorded":
        return read_branch_list(rec["repo_id"])
    cached = Path(results_dir) / rec["suite"] / rec["model"] / "branches.txt"
    if cached.exists():
        return read_branch_list(cached)
    names = sorted(hub_branches(rec["repo_id"]))
    write_text(cached, f"# branches of {rec['repo_id']}, listed from the Hub; delete to list again\n"
               + "\n".join(names) + "\n")
    return names


def planned_revisions(rec: dict[str, Any], **kwargs) -> list[str]:
    """The revisions the workflow probes for one model record, ordered by step."""
    candidates = checkpoint_revisions(candidate_branches(rec, **kwargs), stage=rec.get("stage", 1),
                                      ingredient=rec.get("ingredient"))
    return select_revisions(candidates, rec.get("revisions", "all"), repo_id=rec["repo_id"])
