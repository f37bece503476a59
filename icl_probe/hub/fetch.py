"""Fetch one checkpoint (config + weights) for probing and verify it.

Layout: each checkpoint is downloaded into its own Hub cache, ``dest_dir`` itself
(``<dest_dir>/models--<org>--<name>/{blobs,snapshots/<commit>,refs/<revision>}``), so

    AutoModelForCausalLM.from_pretrained(repo_id, revision=revision, cache_dir=dest_dir,
                                         local_files_only=True)
    AutoTokenizer.from_pretrained(repo_id, revision=revision, cache_dir=dest_dir,
                                  local_files_only=True)

load exactly the fetched files. Everything a fetch writes is under ``dest_dir``, so deleting
that folder frees the checkpoint: the workflow's ``fetch`` rule declares it ``temp()``
(rules/fetch.smk) and Snakemake removes it once the checkpoint's probe job is done, which
bounds a sweep's disk use by the checkpoints in flight.
By default the revision's tokenizer files (a few MB against GBs of weights) come along, so one
cache serves both loads; ``with_tokenizer=False`` leaves them out (config and weights only).
``<dest_dir>/fetched.json`` records where everything is. Local sources (a Hub cache on disk, e.g.
the mini-suite) are not copied: fetching only checks the files and points at them.

Safety and robustness:
- only config, generation config, the shard index and the weights are downloaded; safetensors
  is preferred (the manifest records ``format``), ``.bin`` weights are checked to load with
  ``torch.load(weights_only=True)`` (transformers loads them that way too); remote code is never
  involved;
- transient errors (HTTP 408/429/5xx, refused or dropped connections, short bodies) are retried
  with exponential backoff; huggingface_hub itself resumes a dropped body with an HTTP Range
  request, and files already fetched and verified are not downloaded again (resumable per file);
- every weight file is checked against the manifest's LFS sha256, every other file against its
  git oid; a mismatch removes the file and raises :class:`HashMismatchError`;
- free disk is checked before downloading (:class:`InsufficientDiskError`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from icl_probe.hub.errors import (
    CheckpointSourceError,
    DuplicateCheckpointError,
    FetchFailedError,
    HashMismatchError,
    InsufficientDiskError,
    revision_not_found,
    validate_repo_file,
    validate_repo_id,
    validate_revision,
)
from icl_probe.hub.integrity import weights_only_error
from icl_probe.hub.resolve import (
    _local_files,
    cache_repo_dir,
    git_blob_oid_file,
    sha256_file,
    translate_hub_error,
)
from icl_probe.io import read_json, write_json

log = logging.getLogger(__name__)

FETCHED_NAME = "fetched.json"
DISK_MARGIN_BYTES = 64 * 2**20  # headroom kept free beyond the files themselves


def load_manifest(manifest: dict | str | os.PathLike) -> dict:
    return manifest if isinstance(manifest, dict) else read_json(manifest)


def manifest_entry(manifest: dict, revision: str) -> dict:
    for e in manifest["revisions"]:
        if e["revision"] == revision:
            return e
    raise revision_not_found(f"the manifest of {manifest['repo_id']}", revision, [e["revision"] for e in manifest["revisions"]])


# --- transient errors and retries -----------------------------------------------------------------

def is_transient(err: BaseException) -> bool:
    """True for errors worth retrying: 408/429/5xx answers, network failures, short downloads."""
    import httpx2
    from huggingface_hub import errors as hf_errors

    for e in _error_chain(err):
        if isinstance(e, (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError,
                          hf_errors.RevisionNotFoundError, hf_errors.RemoteEntryNotFoundError)):
            return False
        if isinstance(e, hf_errors.HfHubHTTPError):
            status = e.response.status_code if e.response is not None else None
            return status in (408, 429) or (status is not None and status >= 500)
        if isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return True
        if isinstance(e, OSError) and "Consistency check failed" in str(e):
            return True
    return False


def _error_chain(err: BaseException | None):
    """``err``, then its causes (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def retry_after_s(err: BaseException) -> float | None:
    """The seconds an HTTP answer in the error's chain asks to wait (its ``Retry-After`` header in
    seconds, as the Hub's HTTP 429 gives it); None when none does."""
    from huggingface_hub import errors as hf_errors

    for e in _error_chain(err):
        if isinstance(e, hf_errors.HfHubHTTPError) and e.response is not None:
            value = (e.response.headers.get("Retry-After") or "").strip()
            if value.isdigit():
                return float(value)
    return None


def with_retries(fn: Callable[[], Any], *, what: str, attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, max_retry_after_s: float = 900.0) -> Any:
    """Call ``fn`` until it succeeds, retrying transient errors up to ``attempts`` times in all.

    The wait doubles from ``backoff_s`` (at most ``max_backoff_s``); an answer with
    ``Retry-After`` (the Hub's per-IP rate limit: HTTP 429) is waited out as asked, up to
    ``max_retry_after_s``."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below
            if not is_transient(err):
                raise
            if attempt == attempts:
                raise FetchFailedError(
                    f"{what}: still failing after {attempts} attempts ({type(err).__name__}: {err}); "
                    "the Hub or the network is having trouble, re-run later (finished files are kept)"
                ) from err
            wait = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
            asked = retry_after_s(err)
            if asked is not None:
                wait = max(wait, min(asked, max_retry_after_s))
                log.warning("%s: rate-limited by the Hub (attempt %d/%d), retrying in %.1fs as it asks (Retry-After)",
                            what, attempt, attempts, wait)
            else:
                log.warning("%s: %s (attempt %d/%d), retrying in %.1fs", what, type(err).__name__, attempt,
                            attempts, wait)
            time.sleep(wait)


# --- disk ----------------------------------------------------------------------------------------

def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_free_disk(path: str | os.PathLike, needed: int, *, margin: int = DISK_MARGIN_BYTES, what: str = "") -> None:
    free = free_bytes(path)
    if free < needed + margin:
        raise InsufficientDiskError(
            f"not enough free disk to fetch {what or 'the checkpoint'} into {str(path)!r}: needs "
            f"{_fmt(needed)} (+{_fmt(margin)} headroom), {_fmt(free)} free. Free space, point "
            "resources at a larger disk, or probe fewer checkpoints at once (snakemake --cores / resources)."
        )


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def dir_size(path: str | os.PathLike) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed, so blobs count once)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            fp = os.path.join(root, f)
            if not os.path.islink(fp):
                total += os.path.getsize(fp)
    return total


# --- downloading into a per-checkpoint Hub cache ---------------------------------------------------

def _verify(path: Path, spec: dict) -> bool:
    if "sha256" in spec and spec["sha256"]:
        return sha256_file(path) == spec["sha256"]
    if spec.get("oid"):
        return git_blob_oid_file(path) == spec["oid"]
    return os.path.getsize(path) == spec["size"]


def _remove_cached(pointer: Path) -> None:
    """Remove a snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(pointer))
    for p in (pointer, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def stall_timeout(seconds: float | None):
    """Within the block, a download that receives no byte for ``seconds`` is aborted and resumed
    from where it stopped (huggingface_hub's read timeout, ``HF_HUB_DOWNLOAD_TIMEOUT``, which it
    reads at each request; its own resume with an HTTP Range request follows). None: unchanged."""
    from huggingface_hub import constants

    if seconds is None:
        yield
        return
    old = constants.HF_HUB_DOWNLOAD_TIMEOUT
    constants.HF_HUB_DOWNLOAD_TIMEOUT = seconds
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = old


def _download_files(repo_id: str, revision: str, commit: str, files: list[dict], cache_dir: Path, *,
                    endpoint: str | None, token: str | bool | None, attempts: int, backoff_s: float,
                    stall_s: float | None = None) -> list[dict]:
    """Download ``files`` of ``commit`` into the Hub cache ``cache_dir``, verified; return their records."""
    from huggingface_hub import hf_hub_download

    snap = cache_repo_dir(cache_dir, repo_id) / "snapshots" / commit
    todo, done = [], []
    for spec in files:
        validate_repo_file(spec["path"])
        pointer = snap / spec["path"]  # validated above: relative, no '..'; it is a symlink into blobs/
        if pointer.exists() and _verify(pointer, spec):
            done.append(spec)  # fetched earlier (resumed run)
        else:
            if pointer.exists() or pointer.is_symlink():
                _remove_cached(pointer)
            todo.append(spec)
    check_free_disk(cache_dir, sum(s["size"] for s in todo), what=f"{repo_id}@{revision}")
    for spec in todo:
        what = f"{repo_id}@{revision}: {spec['path']}"

        def _get(spec=spec):
            try:
                # Pinned to the manifest's commit: the branch cannot move under us.
                return hf_hub_download(repo_id, spec["path"], revision=commit, cache_dir=cache_dir,
                                       endpoint=endpoint, token=token)
            except Exception as err:  # noqa: BLE001
                new = translate_hub_error(err, repo_id, endpoint=endpoint)
                if new is err:
                    raise
                raise new from err

        with stall_timeout(stall_s):
            path = Path(with_retries(_get, what=what, attempts=attempts, backoff_s=backoff_s))
        if not _verify(path, spec):
            _remove_cached(path)
            kind = "sha256" if spec.get("sha256") else "git oid"
            raise HashMismatchError(
                f"{what}: downloaded file does not match the manifest's {kind} "
                f"({spec.get('sha256') or spec.get('oid')}); the file has been removed. If the repo "
                "changed since the manifest was resolved, resolve it again; otherwise re-run the fetch."
            )
        done.append(spec)
    # refs/<revision> -> commit, so from_pretrained(repo_id, revision=<branch>, local_files_only=True) finds it
    refs = cache_repo_dir(cache_dir, repo_id) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / validate_revision(revision)).write_text(commit)
    return done


def _check_weights_only(paths: list[Path]) -> None:
    """A ``.bin`` checkpoint must load through torch's weights-only unpickler."""
    for p in paths:
        if problem := weights_only_error(p):
            for q in paths:
                _remove_cached(q)
            raise CheckpointSourceError(
                f"{problem}; refusing to load it any other way, the fetched weights have been removed")


def fetch_checkpoint(
    manifest: dict | str | os.PathLike,
    revision: str,
    dest_dir: str | os.PathLike,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    attempts: int = 5,
    backoff_s: float = 1.0,
    with_tokenizer: bool = True,
    stall_s: float | None = None,
) -> dict:
    """Fetch config and weights of ``revision`` into ``dest_dir`` and write ``dest_dir/fetched.json``.

    ``manifest``: the resolved manifest (dict or path). ``endpoint`` defaults to the manifest's,
    then to ``HF_ENDPOINT``. ``with_tokenizer``: also fetch this revision's tokenizer files.
    ``stall_s``: a transfer that receives no byte for this long is aborted and resumed
    (:func:`stall_timeout`; None: huggingface_hub's ``HF_HUB_DOWNLOAD_TIMEOUT``, 10 s by default).

    Returns the ``fetched.json`` record: ``repo_id, revision, commit, step, tokens, source, format,
    cache_dir`` (pass to ``from_pretrained(..., cache_dir=, local_files_only=True)``; ``dest_dir``
    for the Hub, the cache itself for local sources), ``files`` (path, size, sha256),
    ``weight_sha256`` ({path: sha256}, for provenance), ``tokenizer`` (``{repo_id, revision,
    cache_dir}`` to load it from, or None when not fetched).
    Raises ``DuplicateCheckpointError`` for an entry flagged ``duplicate_of`` (never fetched).
    """
    manifest = load_manifest(manifest)
    repo_id = validate_repo_id(manifest["repo_id"])
    entry = manifest_entry(manifest, validate_revision(revision))
    if entry.get("duplicate_of"):
        raise DuplicateCheckpointError(
            f"{repo_id}@{revision} serves the same weights as {entry['duplicate_of']}: duplicates are "
            "neither fetched nor probed (see duplicate_of in the manifest)"
        )
    dest_dir = Path(dest_dir)
    record = {
        "schema_version": 1, "repo_id": repo_id, "revision": revision, "commit": entry["commit"],
        "step": entry["step"], "tokens": entry["tokens"], "source": manifest["source"],
        "format": entry.get("format", "safetensors"), "files": entry["files"],
        "weight_sha256": {f["path"]: f["sha256"] for f in entry["files"]},
        "tokenizer": None,
    }
    tok = manifest.get("tokenizer") or {}
    if manifest["source"] == "local":
        cache_dir = Path(manifest["cache_dir"])
        on_disk = _local_files(cache_dir, repo_id, entry["commit"])
        for spec in entry["files"] + entry.get("aux_files", []):
            if spec["path"] not in on_disk:
                raise CheckpointSourceError(f"{repo_id}@{revision}: {spec['path']} is missing from the local cache")
            if spec.get("sha256") and sha256_file(on_disk[spec["path"]]) != spec["sha256"]:
                raise HashMismatchError(
                    f"{repo_id}@{revision}: {spec['path']} in the local cache does not match the manifest's "
                    "sha256; the cache changed since the manifest was resolved: rebuild or resolve again"
                )
        record.update(cache_dir=str(cache_dir), local=True)
        if tok:
            record["tokenizer"] = {"repo_id": repo_id, "revision": tok["revision"], "cache_dir": str(cache_dir)}
    else:
        endpoint = endpoint or manifest.get("endpoint")
        cache_dir = dest_dir
        files = entry.get("aux_files", []) + entry["files"]
        if with_tokenizer:
            have = {f["path"] for f in files}
            files = files + [f for f in entry.get("tokenizer_files", []) if f["path"] not in have]
        _download_files(repo_id, revision, entry["commit"], files, cache_dir, endpoint=endpoint, token=token,
                        attempts=attempts, backoff_s=backoff_s, stall_s=stall_s)
        if record["format"] == "pytorch":
            snap = cache_repo_dir(cache_dir, repo_id) / "snapshots" / entry["commit"]
            _check_weights_only([snap / f["path"] for f in entry["files"]])
        record.update(cache_dir=str(cache_dir), local=False)
        if with_tokenizer and entry.get("tokenizer_files"):
            record["tokenizer"] = {"repo_id": repo_id, "revision": revision, "cache_dir": str(cache_dir)}
    write_json(dest_dir / FETCHED_NAME, record)
    return record

