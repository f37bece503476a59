"""Progress lines for long jobs: elapsed time, rate and time left, for their log files."""

from __future__ import annotations

import time


def progress(done: float, total: float, seconds: float, unit: str) -> str:
    """``"(37 s, 41.2 steps/s, ETA 1 min 2 s)"``: elapsed time, rate and time left at that rate."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = f"ETA {duration((total - done) / rate)}" if rate > 0 and done < total else (
        "done" if done >= total else "ETA unknown")
    return f"({duration(seconds)}, {rate:.1f} {unit}/s, {eta})"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def every(seconds: float, console=None, clock=time.monotonic):
    """A ``log(line)`` function: every line to stdout (the job's log file), and to ``console``
    (if given) the first line, then at most one every ``seconds``, and the last one (a line
    whose :func:`progress` says "done")."""
    shown = [None]

    def log(line: str) -> None:
        print(line, flush=True)
        now = clock()
        if console is not None and (shown[0] is None or now - shown[0] >= seconds or line.endswith(", done)")):
            shown[0] = now
            try:
                console.write(line + "\n")
            except OSError:  # the console went away: the log file still has every line
                pass

    return log
