"""Snakemake's directory lock, made safe against a killed run.

Snakemake locks the working directory while it runs and removes the lock when it
ends. A run killed with SIGKILL (an OOM killer, a preempted node, ``kill -9``)
cannot remove it, and the next run refuses to start until ``--unlock``. The
workflow records which process holds the lock (:func:`record_owner`, on start);
the next run removes the lock only if that process, on this host, is gone
(:func:`clear_stale_locks`). A lock held by a live run, or by a run on another
host, is left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)
OWNER_FILE = "icl_probe_lock_owner"


def record_owner(state_dir: str | os.PathLike = ".snakemake", pid: int | None = None) -> None:
    """Write ``<host> <pid>`` of the process that now holds the lock."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    (state / OWNER_FILE).write_text(f"{socket.gethostname()} {pid or os.getpid()}\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid that is no longer snakemake does not hold the lock
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    # an empty cmdline (a process still starting) cannot be told apart: keep the lock
    return not cmdline or b"snakemake" in cmdline


def clear_stale_locks(state_dir: str | os.PathLike = ".snakemake") -> bool:
    """Remove the lock files of a run that was killed; return whether any were removed."""
    state = Path(state_dir)
    locks = sorted((state / "locks").glob("*.lock"))
    owner = state / OWNER_FILE
    if not locks or not owner.exists():
        return False
    try:
        host, pid = owner.read_text().split()
        pid_n = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or _alive(pid_n):
        return False
    for lock in locks:
        lock.unlink(missing_ok=True)
    owner.unlink(missing_ok=True)
    log.warning("removed the lock left by snakemake process %s, which was killed; resuming", pid)
    return True
