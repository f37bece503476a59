"""Resolve a model's revisions to a manifest: commit, weight files (size, sha256), step, tokens.

The manifest (``results/{suite}/{model}/manifest.json``, format in docs/ARCHITECTURE.md) is the
single place later steps learn which checkpoints exist and what their weights are. Duplicate
weights are found here, from the LFS sha256 of the Hub's file tree (or the sha256 of a local
cache's snapshot files), before anything is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

from icl_probe.hub.errors import (
    COMMIT_RE,
    CheckpointSourceError,
    InvalidNameError,
    RepoNotFoundError,
    gated_repo,
    repo_not_found,
    revision_not_found,
    safe_join,
    validate_repo_file,
    validate_repo_id,
    validate_revision,
)
from icl_probe.hub.selection import select_revisions
from icl_probe.hub.suites import (
    checkpoint_revisions,
    default_tokens_per_step,
    parse_branch,
    parse_revision,
    read_branch_list,
    suite_info,
    tokens_for,
)
from icl_probe.io import read_json, write_json

SCHEMA_VERSION = 1
LOCAL_SOURCES = ("local", "minisuite")
HUB_SOURCES = ("hub",)

_SAFETENSORS_RE = re.compile(r"^model(?:-\d{5}-of-\d{5})?\.safetensors$")
_PT_BIN_RE = re.compile(r"^pytorch_model(?:-\d{5}-of-\d{5})?\.bin$")
CONFIG_FILES = ("config.json", "generation_config.json")
INDEX_FILES = {"safetensors": "model.safetensors.index.json", "pytorch": "pytorch_model.bin.index.json"}
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json",
)


def weight_files(paths: Sequence[str]) -> tuple[str, list[str]]:
    """``(format, files)``: the safetensors files if the revision has any, else the ``.bin`` ones.

    Raises ``CheckpointSourceError`` if there is neither.
    """
    st = sorted(p for p in paths if _SAFETENSORS_RE.fullmatch(p))
    if st:
        return "safetensors", st
    pt = sorted(p for p in paths if _PT_BIN_RE.fullmatch(p))
    if pt:
        return "pytorch", pt
    raise CheckpointSourceError(f"no weight files (model*.safetensors or pytorch_model*.bin) among {sorted(paths)}")


def aux_files(paths: Sequence[str], fmt: str) -> list[str]:
    """The non-weight files a load needs: config, generation config, the shard index."""
    wanted = list(CONFIG_FILES) + [INDEX_FILES[fmt]]
    return [p for p in wanted if p in set(paths)]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_oid_file(path: str | os.PathLike) -> str:
    """The git object id of a file (what the Hub reports as ``oid`` for non-LFS files)."""
    size = os.path.getsize(path)
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# --- listing a source ---------------------------------------------------------------------------

def cache_repo_dir(cache_dir: str | os.PathLike, repo_id: str) -> Path:
    """``<cache_dir>/models--<org>--<name>``, checked to stay inside ``cache_dir``."""
    org, name = validate_repo_id(repo_id).split("/")
    return safe_join(cache_dir, f"models--{org}--{name}")


def local_branches(cache_dir: str | os.PathLike, repo_id: str) -> dict[str, str]:
    """``{branch: commit}`` from a Hub cache's ``refs/`` folder (names that fail the checks are skipped)."""
    repo_dir = cache_repo_dir(cache_dir, repo_id)
    if not repo_dir.is_dir():
        raise RepoNotFoundError(
            f"repository {repo_id!r} is not in the local cache {str(cache_dir)!r} "
            f"(no folder {repo_dir.name}); build it first (a mini-suite model: "
            f"`snakemake --cores 1 {repo_dir}`, or `icl-probe build-minisuite --model "
            f"{repo_id.split('/')[1]} --cache-dir {cache_dir}`)"
        )
    out = {}
    for ref in sorted((repo_dir / "refs").glob("*")):
        if not ref.is_file():
            continue
        commit = ref.read_text().strip()
        try:
            validate_revision(ref.name)
        except InvalidNameError:
            continue
        if COMMIT_RE.fullmatch(commit):
            out[ref.name] = commit
    return out


def _local_files(cache_dir, repo_id: str, commit: str) -> dict[str, Path]:
    snap = safe_join(cache_repo_dir(cache_dir, repo_id), "snapshots", commit)
    if not snap.is_dir():
        raise CheckpointSourceError(f"{repo_id}: snapshot {commit} named by refs/ is missing from the cache")
    return {p.relative_to(snap).as_posix(): p for p in sorted(snap.rglob("*")) if p.is_file()}


def _build_tokens_per_step(cache_dir, repo_id: str) -> int | None:
    """Tokens per step recorded by the mini-suite builder (``icl_probe_build.json``), if any."""
    path = cache_repo_dir(cache_dir, repo_id) / "icl_probe_build.json"
    try:
        value = read_json(path).get("tokens_per_step")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _hub_api(endpoint: str | None, token: str | bool | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def translate_hub_error(err: Exception, repo_id: str, *, endpoint: str | None = None) -> Exception:
    """Map a huggingface_hub error onto this package's clear errors (or return it unchanged)."""
    from huggingface_hub import errors as hf_errors

    if isinstance(err, hf_errors.GatedRepoError):
        return gated_repo(repo_id)
    if isinstance(err, hf_errors.RevisionNotFoundError):
        return err  # the caller knows the branch list and names the closest ones
    if isinstance(err, hf_errors.RepositoryNotFoundError):
        return repo_not_found(repo_id, endpoint)
    return err


def hub_branches(repo_id: str, *, endpoint: str | None = None, token: str | bool | None = None) -> dict[str, str]:
    """``{branch: commit}`` of a Hub repo (``HfApi().list_repo_refs(repo).branches``)."""
    api = _hub_api(endpoint, token)
    try:
        refs = api.list_repo_refs(repo_id)
    except Exception as err:  # noqa: BLE001 - translated or re-raised
        new = translate_hub_error(err, repo_id, endpoint=endpoint)
        if new is err:
            raise
        raise new from err
    return {b.name: b.target_commit for b in refs.branches}


def _hub_tree(api, repo_id: str, commit: str, endpoint: str | None) -> dict[str, dict]:
    """``{path: {"size", "sha256" (LFS only), "oid"}}`` of the files at the repo root of ``commit``."""
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = list(api.list_repo_tree(repo_id, revision=commit))
    except Exception as err:  # noqa: BLE001
        new = translate_hub_error(err, repo_id, endpoint=endpoint)
        if new is err:
            raise
        raise new from err
    out = {}
    for e in entries:
        if isinstance(e, RepoFile):
            out[e.path] = {
                "size": int(e.lfs.size if e.lfs else e.size),
                "sha256": e.lfs.sha256 if e.lfs else None,
                "oid": e.blob_id,
            }
    return out


# --- the manifest -------------------------------------------------------------------------------

def resolve_model(
    suite: str,
    model: str,
    repo_id: str,
    source: str,
    selection: str | Sequence[str],
    out_path: str | os.PathLike | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    endpoint: str | None = None,
    branch_list: str | os.PathLike | Sequence[str] | None = None,
    token: str | bool | None = None,
    tokens_per_step: int | None = None,
    stage: int | None | str = "default",
    ingredient: int | None = None,
) -> dict[str, Any]:
    """Resolve the selected revisions of one model and write ``manifest.json`` atomically.

    - ``source``: ``"hub"`` (the Hub at ``endpoint``, default ``HF_ENDPOINT``) or ``"local"`` /
      ``"minisuite"`` (a Hub cache at ``cache_dir``; branches from its ``refs/``).
    - ``selection``: see :func:`icl_probe.hub.selection.select_revisions`.
    - ``branch_list``: the candidate branch names instead of all the source's branches: a list,
      a path to a recorded list, ``"recorded"`` for the list shipped with the package for
      ``repo_id``, or ``None`` / ``"live"`` for the source's own branches. Every selected name must exist in the source (else ``RevisionNotFoundError``
      naming the closest).
    - ``tokens_per_step``: default from the suite table, or for a local cache from the mini-suite
      builder's ``icl_probe_build.json``; names that carry T use T instead.
    - ``stage``: staged names (OLMo-2) kept; ``"default"`` = the suite's (1 for OLMo-2); stage-1
      names with and without the ``stage1-`` prefix are one trajectory.
    - ``ingredient``: with stage 2, the one ingredient run kept (each is its own trajectory).

    Per revision: ``commit``, ``files`` (weights: path, size, sha256), ``aux_files`` (config and
    shard index: path, size, git oid), ``tokenizer_files`` (same fields), ``format``
    (safetensors | pytorch), ``step``, ``tokens``, ``stage``, ``duplicate_of`` (see :func:`flag_duplicates`) and ``alias_of``. Top level also
    carries ``tokenizer`` (the last revision's name, commit and tokenizer files).
    """
    validate_repo_id(repo_id)
    info = suite_info(suite, repo_id)
    if stage == "default":
        stage = info.default_stage
    if tokens_per_step is None:
        tokens_per_step = default_tokens_per_step(suite, repo_id)

    if source in LOCAL_SOURCES:
        if cache_dir is None:
            raise ValueError(f"source {source!r} needs cache_dir (the Hub cache holding {repo_id})")
        branches = local_branches(cache_dir, repo_id)
        if tokens_per_step is None:
            tokens_per_step = _build_tokens_per_step(cache_dir, repo_id)
    elif source in HUB_SOURCES:
        branches = hub_branches(repo_id, endpoint=endpoint, token=token)
    else:
        raise ValueError(f"unknown source {source!r}: expected one of {', '.join(LOCAL_SOURCES + HUB_SOURCES)}")

    if branch_list is None or str(branch_list) == "live":
        candidates = list(branches)
    elif isinstance(branch_list, (str, os.PathLike)):
        candidates = read_branch_list(repo_id if str(branch_list) == "recorded" else branch_list)
    else:
        candidates = list(branch_list)
    for name in candidates:
        validate_revision(name)
    candidates = checkpoint_revisions(candidates, stage=stage, ingredient=ingredient)
    selected = select_revisions(candidates, selection, repo_id=repo_id)
    recorded_as = {}
    if branch_list is not None and str(branch_list) != "live":
        selected, recorded_as = _match_recorded(selected, branches)
    for name in selected:
        if name not in branches:
            raise revision_not_found(repo_id, name, checkpoint_revisions(branches, stage=None) or list(branches))

    api = _hub_api(endpoint, token) if source in HUB_SOURCES else None
    entries, listings = [], {}
    for name in selected:
        commit = branches[name]
        if api is None:
            paths = _local_files(cache_dir, repo_id, commit)
            listing = {p: {"size": f.stat().st_size, "path_on_disk": f} for p, f in paths.items()}
        else:
            listing = _hub_tree(api, repo_id, commit, endpoint)
        listings[name] = listing
        fmt, weights = weight_files(list(listing))
        files = []
        for p in weights:
            validate_repo_file(p)
            meta = listing[p]
            sha = meta.get("sha256") or (sha256_file(meta["path_on_disk"]) if "path_on_disk" in meta else None)
            if sha is None:
                raise CheckpointSourceError(f"{repo_id}@{name}: weight file {p} is not stored with LFS (no sha256)")
            files.append({"path": p, "size": meta["size"], "sha256": sha})
        aux = []
        for p in aux_files(list(listing), fmt):
            meta = listing[p]
            oid = meta.get("oid") or git_blob_oid_file(meta["path_on_disk"])
            aux.append({"path": p, "size": meta["size"], "oid": oid})
        step, _, st, ing = parse_branch(name)
        entries.append({
            "revision": name, "step": step, "tokens": tokens_for(name, tokens_per_step), "stage": st,
            **({"ingredient": ing} if ing is not None else {}),
            "commit": commit, "format": fmt, "files": files, "aux_files": aux,
            "tokenizer_files": _tokenizer_specs(listing), "duplicate_of": None, "alias_of": None, "integrity": None,
        })
        if name in recorded_as:
            entries[-1]["recorded_as"] = recorded_as[name]
    flag_duplicates(entries, info.aliases)

    tokenizer = None
    if entries:
        last = entries[-1]
        tokenizer = {"revision": last["revision"], "commit": last["commit"],
                     "files": _tokenizer_specs(listings[last["revision"]])}

    manifest = {
        "schema_version": SCHEMA_VERSION, "suite": suite, "model": model, "repo_id": repo_id,
        "source": "local" if source in LOCAL_SOURCES else "hub",
        "cache_dir": None if cache_dir is None or source not in LOCAL_SOURCES else str(cache_dir),
        "endpoint": endpoint if source in HUB_SOURCES else None,
        "tokens_per_step": tokens_per_step,
        "selection": selection if isinstance(selection, str) else list(selection),
        "stage": stage,
        **({"ingredient": ingredient} if ingredient is not None else {}),
        "n_branches": len(checkpoint_revisions(branches, stage=stage, ingredient=ingredient)),
        "tokenizer": tokenizer,
        "revisions": entries,
    }
    if out_path is not None:
        write_json(out_path, manifest)
    return manifest


def _tokenizer_specs(listing: dict[str, dict]) -> list[dict]:
    """Tokenizer files of a revision (path, size, git oid), config.json included: AutoTokenizer
    reads the model type from it to pick the tokenizer class."""
    return [
        {"path": p, "size": listing[p]["size"],
         "oid": listing[p].get("oid") or git_blob_oid_file(listing[p]["path_on_disk"])}
        for p in ("config.json",) + TOKENIZER_FILES if p in listing
    ]


def _match_recorded(selected: list[str], branches: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Map recorded names missing from the source onto its branch of the same (stage, step).

    OLMo-2's T is rounded, so a recorded or constructed name can differ from the Hub's in T alone.
    Returns the names to use and ``{source name: recorded name}`` for those substituted; a name
    with no unique same-(stage, step) branch is left as is (and reported as missing).
    """
    by_key: dict[tuple, list[str]] = {}
    for b in branches:
        try:
            br = parse_branch(b)
        except ValueError:
            continue
        by_key.setdefault((br.stage, br.ingredient, br.step), []).append(b)
    out, renamed = [], {}
    for name in selected:
        if name not in branches:
            br = parse_branch(name)
            same = by_key.get((br.stage, br.ingredient, br.step), [])
            if len(same) == 1:
                renamed[same[0]] = name
                name = same[0]
        out.append(name)
    return out, renamed


def flag_duplicates(entries: list[dict], aliases: Sequence[tuple[str, str]] = ()) -> None:
    """Set ``duplicate_of`` / ``alias_of`` on manifest entries, in place.

    Two checkpoints of one run never share a byte-identical weight file, so entries whose weight
    files overlap (the same sha256 set, or one shard in common, as pythia-12b's step50000 serving
    the final checkpoint's first shard) form a group. Its owner is the entry with the highest
    step: the known cases are branches filled with a later checkpoint's file (pythia-2.8b's early
    branches serve ``main``'s). Every other member gets ``duplicate_of: <owner>``.

    A documented alias pair ``(a, b)`` with equal sha256 sets (Pythia's step0 and step1) is not a
    duplicate: ``b`` gets ``alias_of: a`` and shares ``a``'s ``duplicate_of`` (null unless ``a``
    is itself a duplicate).
    """
    by_rev = {e["revision"]: e for e in entries}
    sha_sets = {e["revision"]: frozenset(f["sha256"] for f in e["files"]) for e in entries}
    alias_members = {}
    for a, b in aliases:
        if a in by_rev and b in by_rev and sha_sets[a] == sha_sets[b]:
            alias_members[b] = a
            by_rev[b]["alias_of"] = a
    # union-find over shared sha256, aliases left out (they follow their original)
    parent = {r: r for r in by_rev if r not in alias_members}

    def find(r):
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    first_with = {}
    for r in parent:
        for sha in sha_sets[r]:
            if sha in first_with:
                parent[find(r)] = find(first_with[sha])
            else:
                first_with[sha] = r
    groups: dict[str, list[str]] = {}
    for r in parent:
        groups.setdefault(find(r), []).append(r)
    for members in groups.values():
        if len(members) < 2:
            continue
        owner = max(members, key=lambda r: (by_rev[r]["step"], r))
        for r in members:
            if r != owner:
                by_rev[r]["duplicate_of"] = owner
                by_rev[r]["integrity"] = integrity_text(r, [by_rev[m] for m in members])
    for b, a in alias_members.items():
        by_rev[b]["duplicate_of"] = by_rev[a]["duplicate_of"]
        if by_rev[a].get("integrity"):
            by_rev[b]["integrity"] = by_rev[a]["integrity"]


def integrity_text(revision: str, members: list[dict]) -> str:
    """What is wrong with ``revision``, one of a group of entries sharing weight files:
    ``"duplicate of X"`` when its files are all X's (X: the latest such member), else
    ``"corrupt: shard i of n is X's"`` naming each shared shard (1-based, in file order) and
    the latest other member holding it, as pythia-12b's step50000 serving the final checkpoint's
    first shard."""
    shas = {e["revision"]: frozenset(f["sha256"] for f in e["files"]) for e in members}
    later = [e["revision"] for e in sorted(members, key=lambda e: (e["step"], e["revision"]), reverse=True)
             if e["revision"] != revision]
    same = [r for r in later if shas[r] == shas[revision]]
    if same:
        return f"duplicate of {same[0]}"
    me = next(e for e in members if e["revision"] == revision)
    files = sorted(me["files"], key=lambda f: f.get("path", ""))
    owners: dict[str, list[int]] = {}
    for i, f in enumerate(files, 1):
        holder = next((r for r in later if f["sha256"] in shas[r]), None)
        if holder is not None:
            owners.setdefault(holder, []).append(i)
    parts = []
    for holder, idx in owners.items():
        nums = ", ".join(map(str, idx[:-1])) + (" and " if len(idx) > 1 else "") + str(idx[-1])
        parts.append(f"shard{'s' if len(idx) > 1 else ''} {nums} of {len(files)} "
                     f"{'are' if len(idx) > 1 else 'is'} {holder}'s")
    return "corrupt: " + "; ".join(parts)

