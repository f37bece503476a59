"""Errors of the checkpoint sources, and the name checks that run before a name becomes a path.

Every error says what went wrong and what to do about it. All derive from
:class:`CheckpointSourceError`, so a caller can catch the family at once; the
name errors are also :class:`ValueError` (bad input), the disk error also
:class:`OSError`.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Iterable

# A Hub repo id: "<org>/<name>", each part of letters, digits, '.', '_', '-', starting and ending
# with a letter or digit. '--' is refused because the Hub cache folder name `models--org--name`
# uses it as a separator, '..' because it could step out of a folder.
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
# A revision (branch name or 40-hex commit): one path component, no '/', no '..'.
REVISION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# A file inside a repo: '/'-separated components of the same alphabet, none of them '.' or '..'.
_FILE_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}"
REPO_FILE_RE = re.compile(rf"^{_FILE_PART}(?:/{_FILE_PART}){{0,7}}$")


class CheckpointSourceError(Exception):
    """Base class of every error raised by :mod:`icl_probe.hub`."""


class InvalidNameError(CheckpointSourceError, ValueError):
    """A repo id, revision or file name that is not safe to turn into a path or URL."""


class RepoNotFoundError(CheckpointSourceError):
    """The repository does not exist (or is private and the token cannot see it)."""


class RevisionNotFoundError(CheckpointSourceError):
    """The revision (branch) does not exist in the repository.

    ``closest`` lists the most similar existing names, best first.
    """

    def __init__(self, message: str, *, revision: str = "", closest: list[str] | None = None):
        super().__init__(message)
        self.revision = revision
        self.closest = list(closest or [])


class GatedRepoError(CheckpointSourceError):
    """The repository is gated and no token (or a token without access) was sent."""


class HashMismatchError(CheckpointSourceError):
    """A downloaded file's sha256 differs from the manifest's; the file has been removed."""


class InsufficientDiskError(CheckpointSourceError, OSError):
    """Not enough free disk for the files about to be downloaded."""


class FetchFailedError(CheckpointSourceError):
    """A download kept failing with transient errors after every retry."""


class DamagedCheckpointError(CheckpointSourceError):
    """A checkpoint's files on disk are truncated, unparsable or missing; nothing was loaded from them."""


class RemoteCodeRefusedError(CheckpointSourceError):
    """The checkpoint can only be built by running code shipped in its repository; that never happens."""


class DuplicateCheckpointError(CheckpointSourceError):
    """A manifest entry flagged ``duplicate_of`` was asked for: duplicates are never fetched."""


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is a strict ``org/name`` Hub id, else raise :class:`InvalidNameError`."""
    if not isinstance(repo_id, str) or not REPO_ID_RE.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise InvalidNameError(
            f"invalid repo id {repo_id!r}: expected 'org/name' made of letters, digits, '.', '_' and '-' "
            "(starting and ending with a letter or digit, no '..' or '--'), e.g. 'EleutherAI/pythia-160m'"
        )
    return repo_id


def validate_revision(revision: str) -> str:
    """Return ``revision`` if it is a safe branch name or commit id, else raise :class:`InvalidNameError`."""
    if not isinstance(revision, str) or not REVISION_RE.fullmatch(revision) or ".." in revision:
        raise InvalidNameError(
            f"invalid revision {revision!r}: expected one branch name or commit id of letters, digits, "
            "'.', '_' and '-' (no '/', no '..'), e.g. 'step1000' or 'stage1-step1000-tokens3B'"
        )
    return revision


def validate_repo_file(path: str) -> str:
    """Return ``path`` if it is a safe relative file path inside a repo, else raise :class:`InvalidNameError`."""
    if (
        not isinstance(path, str)
        or not REPO_FILE_RE.fullmatch(path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise InvalidNameError(f"invalid file name in repo {path!r}: expected a relative path without '..'")
    return path


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join ``parts`` under ``root`` and check the result stays inside ``root`` (symlinks resolved)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise InvalidNameError(f"path {'/'.join(parts)!r} leaves the folder {str(base)!r}")
    return target


def closest_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` candidates most similar to ``name`` (difflib ratio), best first.

    Checkpoint names differ mostly in their digits, so a name whose step is numerically
    nearest is added when difflib finds nothing close.
    """
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    step = _step_of(name)
    if step is not None:
        by_step = sorted(
            (c for c in candidates if _step_of(c) is not None), key=lambda c: (abs(_step_of(c) - step), c)
        )
        for c in by_step[:n]:
            if c not in found:
                found.append(c)
    return found[:n]


def _step_of(name: str) -> int | None:
    m = re.search(r"step(\d+)", name)
    return int(m.group(1)) if m else None


def revision_not_found(repo_id: str, revision: str, existing: Iterable[str]) -> RevisionNotFoundError:
    """Build the error for a missing revision, naming the closest existing ones."""
    existing = list(existing)
    close = closest_names(revision, existing)
    hint = f" Closest existing: {', '.join(close)}." if close else ""
    return RevisionNotFoundError(
        f"revision {revision!r} does not exist in {repo_id} ({len(existing)} branches).{hint}",
        revision=revision,
        closest=close,
    )


def gated_repo(repo_id: str) -> GatedRepoError:
    return GatedRepoError(
        f"{repo_id} is gated: accept its conditions on its Hub page, then give a token with read access, "
        "e.g. `export HF_TOKEN=hf_...` (or `hf auth login`) before running the workflow."
    )


def repo_not_found(repo_id: str, endpoint: str | None = None) -> RepoNotFoundError:
    where = f" at {endpoint}" if endpoint else ""
    return RepoNotFoundError(
        f"repository {repo_id!r} does not exist{where} (or is private): check the spelling of repo_id; "
        "for a private repo set `HF_TOKEN`."
    )


# --- the network -----------------------------------------------------------------------------------

TROUBLESHOOTING = "README.md, Troubleshooting"


def network_cause(err: BaseException | None) -> BaseException | None:
    """The connection failure behind ``err`` (a refused or unresolvable endpoint, a timeout,
    huggingface_hub's offline mode), found along its chain of causes; None if there is none."""
    from huggingface_hub import errors as hf_errors

    try:
        import httpx2 as httpx
    except ImportError:  # huggingface_hub built on the httpx name
        import httpx
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (httpx.TransportError, ConnectionError, TimeoutError, hf_errors.OfflineModeIsEnabled)):
            return err
        err = err.__cause__ or err.__context__
    return None


def endpoint_in_use(endpoint: str | None = None) -> str:
    """The Hub endpoint a request went to: ``endpoint``, else HF_ENDPOINT, else huggingface.co."""
    if endpoint:
        return endpoint
    from huggingface_hub import constants

    return constants.ENDPOINT


def unreachable_message(cause: BaseException, endpoint: str | None = None) -> str:
    """Two lines: that the Hub cannot be reached (and why), and what to do."""
    from huggingface_hub import errors as hf_errors

    if isinstance(cause, hf_errors.OfflineModeIsEnabled):
        first = f"the checkpoint is not in the local cache and HF_HUB_OFFLINE is set, so {endpoint_in_use(endpoint)} is not asked"
    else:
        first = f"cannot reach the Hub at {endpoint_in_use(endpoint)} ({type(cause).__name__}: {cause})"
    return (f"{first}\n  fix: check the network connection, HF_ENDPOINT and any proxy (HTTPS_PROXY); without "
            "network, use a Hub cache that already holds the checkpoint (--cache-dir, --local-files-only) "
            f"or the embedded mini-suite; see {TROUBLESHOOTING}")
