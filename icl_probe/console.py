"""Short console lines for a workflow run: one line when a job starts, one when it ends.

Snakemake writes each job as a block (rule, input and output lists, reason, wildcards,
resources: 8 to 12 lines, some of them hundreds of characters long) and its end as three more.
For a run of ~90 jobs that buries what a user wants to see. :class:`ShortJobLines`, on
Snakemake's console handler only, turns them into

    [23:01:28] probe mini/pythia-s/step1000 started
    [23:01:35] probe mini/pythia-s/step1000 done (13 of 88 jobs, 15%)

and drops the scheduler's "Select jobs to execute..." / "Execute N jobs..." lines; after Ctrl-C each
job it stopped is one line, not an error block with its traceback. Errors, warnings,
the job table and everything else pass unchanged; shell commands appear only with
``--printshellcmds`` (``-p``). The full detail stays in the run's log file,
``.snakemake/log/*.snakemake.log``, written from the unchanged records. The workflow
installs it for real runs, not for dry runs (``-n`` lists the jobs in full).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque

# the scheduler's lines between jobs, which say nothing a user acts on
_SCHEDULER = ("Select jobs to execute...",)


def job_label(rule: str, wildcards: dict | None) -> str:
    """``probe mini/pythia-s/step1000``: the rule and its wildcard values in order."""
    values = "/".join(f"round {v}" if k == "round" else str(v) for k, v in (wildcards or {}).items())
    return f"{rule} {values}" if values else rule


class ShortJobLines:
    """Rewrites Snakemake's job records to one line each (see the module docstring).

    :meth:`rewrite` returns None (drop the record), the record itself (unchanged), or a rewritten
    copy: the record is shared with the log-file handler, which must see it whole."""

    def __init__(self, clock=time.localtime) -> None:
        self.clock = clock
        self.labels: dict = {}  # jobid -> label, from the job's start to its end
        self.finished: deque = deque()  # labels of finished jobs whose progress line is next
        self.interrupted = False  # after Ctrl-C the stopped jobs "fail": one line each, not an error block

    def _line(self, record: logging.LogRecord, text: str) -> logging.LogRecord:
        line = copy.copy(record)
        line.msg = f"[{time.strftime('%H:%M:%S', self.clock())}] {text}"
        line.args = None
        line.event = None  # a plain message for Snakemake's formatter
        return line

    def rewrite(self, record: logging.LogRecord) -> logging.LogRecord | None:
        event = str(getattr(record, "event", None) or "")
        if event == "job_info":
            label = job_label(record.rule_name, getattr(record, "wildcards", None))
            self.labels[record.jobid] = label
            return self._line(record, f"{label} started")
        if event == "job_finished":
            self.finished.append(self.labels.pop(getattr(record, "job_id", None), "a job"))
            return None
        if event == "progress":
            label = self.finished.popleft() if self.finished else "a job"
            done, total = record.done, record.total
            return self._line(record, f"{label} done ({done} of {total} jobs, {100 * done // max(total, 1)}%)")
        if event == "shellcmd":  # shown at all only with --printshellcmds; a run: rule has none
            cmd = getattr(record, "shellcmd", None)
            return self._line(record, f"  $ {cmd}") if cmd else None
        if event == "job_started":  # "Execute N jobs..."
            return None
        if event == "job_error" and self.interrupted:
            label = self.labels.pop(getattr(record, "jobid", None), getattr(record, "rule_name", "a job"))
            return self._line(record, f"{label} stopped (interrupted; the next run redoes it)")
        if event == "error" and self.interrupted and getattr(record, "exception", "") == "RuleException":
            return None  # the stopped job's "command exited with non-zero exit code"
        if not event and str(record.msg).startswith("Terminating processes on user request"):
            self.interrupted = True
            return record
        if not event and isinstance(record.msg, str) and record.msg.startswith(_SCHEDULER):
            return None
        return record


def install(logger: logging.Logger) -> ShortJobLines | None:
    """Route the records of ``logger``'s console handler (the one writing to a stream, not a
    file) through :class:`ShortJobLines`; return it, or None if there is no such handler (then
    nothing changes). Snakemake's own filter (``--quiet``, ``-p``) still runs first."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if getattr(handler, "icl_probe_short_lines", None):
                return handler.icl_probe_short_lines
            short, emit = ShortJobLines(), handler.emit

            def short_emit(record, short=short, emit=emit):
                line = short.rewrite(record)
                if line is not None:
                    emit(line)

            handler.emit = short_emit
            handler.icl_probe_short_lines = short
            return short
    return None
