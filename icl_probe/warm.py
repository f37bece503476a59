"""Warm workers: the import of torch and transformers (about 7 s on 2 cores) paid once per run, not
once per job.

A workflow runs one ``icl-probe`` command per checkpoint, and each used to spend most of its
fixed cost importing torch and transformers. On a local run the first command starts, in the
background, a *warm worker*: a process that imports those libraries (:data:`PRELOAD`) and then
waits on a Unix socket. Every later command connects to it, hands over its arguments, working
folder, environment and standard streams, and the worker forks a child that runs the command
(:func:`icl_probe.cli.main`) exactly as the command would have run itself. The command waits
for the child and exits with its status.

What keeps this honest:

* The worker imports third-party libraries only. The child drops every ``icl_probe`` module it
  inherited and imports the package afresh, so an edited probe is the code that runs.
* One worker per interpreter, ``sys.path`` and every environment variable those libraries read
  at import (``HF_*``, ``TORCH*``, ``OMP_*``, ...): a command with another environment gets
  another worker (:func:`worker_key`). A reinstall of a preloaded library (the mtime of its
  folder) or an edit of this module does too.
* If the command dies (``kill -9``), its connection closes and the worker sends the child
  SIGTERM, which the child handles like a stopped job: temporary files are removed and results
  already written are kept.
* A command never waits for a worker: with none running it runs in its own process. The second
  command of a key within five minutes starts one for the commands after it (a one-off command
  does not pay for a worker's preload). A worker exits after :data:`IDLE_S` seconds without a
  command.
* Ctrl-C, SIGTERM and SIGHUP to the command are passed on to the job, and the command exits
  with the job's status.
* Off on Slurm (``SLURM_JOB_ID`` set: one command per allocation, nothing to share) and when
  ``ICL_PROBE_WARM=0``. Snakemake's benchmark files then measure the command itself; with a warm
  worker they measure the waiting client, and the job's own peak memory and CPU time are in the
  last line of its log (``warm worker: ...``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path

IDLE_S = 60.0
# imported by the worker before it forks: what the commands import that costs time
PRELOAD = (
    "numpy", "yaml", "jsonschema", "scipy.stats", "scipy.optimize", "pandas", "huggingface_hub",
    "safetensors.torch", "tokenizers", "torch", "transformers", "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto", "transformers.models.gpt_neox.modeling_gpt_neox",
    "transformers.models.olmo2.modeling_olmo2", "transformers.models.llama.modeling_llama",
    "transformers.models.gpt2.modeling_gpt2", "matplotlib", "matplotlib.pyplot",
)
# environment variables that a preloaded library may read at import time
ENV_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "TORCH", "PYTORCH", "CUDA", "OMP_",
                "MKL", "OPENBLAS", "KMP_", "GOTO", "NUMEXPR", "PYTHON", "MPL", "LD_", "XDG_", "HOME",
                "SAFETENSORS", "ICL_PROBE")
MAX_REQUEST = 16 << 20


def enabled(environ=os.environ) -> bool:
    """Whether commands go through a warm worker: on unless ``ICL_PROBE_WARM=0``, a Slurm job, or a
    platform without pidfd and fd passing (Linux 5.3 and later have them)."""
    setting = environ.get("ICL_PROBE_WARM", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if "SLURM_JOB_ID" in environ and setting not in ("1", "true", "yes", "on"):
        return False
    return hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def worker_dir(environ=os.environ) -> Path:
    base = environ.get("ICL_PROBE_WARM_DIR") or environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"icl-probe-warm-{os.getuid()}"


def worker_key(environ=os.environ) -> str:
    """What a worker's preloaded state depends on: the interpreter, its path, the import-time
    environment, this module and the installed libraries."""
    env = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)}
    stamps = [_stamp(__file__)]
    for name in ("torch", "transformers", "huggingface_hub", "numpy", "scipy"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            stamps.append(_stamp(Path(spec.origin).parent))
    blob = json.dumps([sys.executable, sys.path, env, stamps], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _stamp(path) -> list:
    st = os.stat(path)
    return [str(path), st.st_mtime_ns, st.st_size]


def _paths(environ) -> tuple[Path, Path]:
    d = worker_dir(environ)
    key = worker_key(environ)
    return d / f"{key}.sock", d / f"{key}.lock"


# ---------------------------------------------------------------- client (the icl-probe command)

def run(argv: list[str], entry: str = "icl_probe.cli:main", environ=None) -> int | None:
    """Run ``entry(argv)`` in a warm worker and return its exit status; None when no worker
    answered (the caller then runs the command itself). Starts a worker for the next command
    when none is running."""
    environ = dict(os.environ if environ is None else environ)
    sock_path, _ = _paths(environ)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock_path))
    except OSError:
        conn.close()
        if _wanted(sock_path):
            start_worker(environ)
        return None
    with conn:
        request = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": environ,
                              "path": sys.path, "entry": entry}).encode()
        try:
            socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [0, 1, 2])
            conn.settimeout(10.0)
            started = _recv_line(conn)  # the worker has forked the child
            if not started.startswith(b"started "):
                return None
            conn.settimeout(None)
        except OSError:
            return None  # the worker went away before the child started: run it here
        previous = _forward_signals(int(started.split()[1]))
        try:
            reply = _recv_line(conn)
        except OSError:
            reply = b""
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not reply.startswith(b"exit "):
            print("icl-probe: the warm worker stopped before the job ended; rerun the command "
                  "(ICL_PROBE_WARM=0 runs it without the worker)", file=sys.stderr)
            return 1
        status = json.loads(reply[5:])
        code = status["code"]
        if code < 0:
            print(f"icl-probe: the job was killed by signal {-code} "
                  f"({signal.Signals(-code).name})", file=sys.stderr)
            return 128 - code
        return code


def _forward_signals(pid: int) -> dict:
    """Ctrl-C, SIGTERM and SIGHUP to the command go to the job, which stops as a job does; the
    command then exits with the job's status."""
    def forward(signum, frame):
        try:
            os.kill(pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        except ProcessLookupError:
            pass
    return {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


def _wanted(sock_path: Path, window_s: float = 300.0) -> bool:
    """A worker is started by the second command of a key within ``window_s``: a one-off command
    (a test, a user's single rerun) does not pay a worker's preload for nothing."""
    seen = sock_path.with_suffix(".seen")
    try:
        fresh = time.time() - seen.stat().st_mtime < window_s
    except OSError:
        fresh = False
    try:
        seen.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        seen.touch()
    except OSError:
        return False
    return fresh


def _recv_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            return buf
        buf += chunk
    return buf[:-1]


def start_worker(environ) -> None:
    """Start a worker in the background, in its own session, with this command's environment;
    it gives up at once if another holds the lock."""
    sock_path, lock_path = _paths(environ)
    try:
        sock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return
    log = open(sock_path.with_suffix(".log"), "ab")
    with log:
        import subprocess

        # the worker imports with this command's sys.path, as the command would have
        boot = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
                "from icl_probe.warm import main; main(sys.argv[2:])")
        subprocess.Popen([sys.executable, "-c", boot, json.dumps(sys.path), str(sock_path), str(lock_path)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ,
                         start_new_session=True, close_fds=True)


# ---------------------------------------------------------------- the worker

def serve(sock_path: Path, lock_path: Path, idle_s: float = IDLE_S) -> None:
    import fcntl

    lock = open(lock_path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another worker for this key is starting or running
    preload = os.environ.get("ICL_PROBE_WARM_PRELOAD")  # a comma-separated list replaces PRELOAD
    for name in PRELOAD if preload is None else [n for n in preload.split(",") if n]:
        try:
            importlib.import_module(name)
            if name == "matplotlib":
                sys.modules["matplotlib"].use("Agg")
        except Exception as e:  # noqa: BLE001 - a library that is not installed is not preloaded
            _log(f"not preloaded: {name}: {e}")
    sock_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, ("accept", None))
    jobs: dict[int, tuple] = {}  # pid -> (connection, pidfd)
    _log(f"ready: pid {os.getpid()}")
    try:
        while True:
            events = sel.select(timeout=None if jobs else idle_s)
            if not events and not jobs:
                break
            for key, _ in events:
                kind, pid = key.data
                if kind == "accept":
                    _accept(listener, sel, jobs, lock)
                elif kind == "exited":
                    _reap(pid, sel, jobs)
                elif kind == "client":  # the command closed its end: stop the child
                    sel.unregister(key.fileobj)
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
    finally:
        sock_path.unlink(missing_ok=True)
        listener.close()
        _log("idle: exiting")


def _accept(listener, sel, jobs, lock) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        conn.settimeout(5.0)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        if len(data) < 4 or len(fds) != 3:
            raise ValueError("incomplete request")
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        data = data[4:]
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ValueError("incomplete request")
            data += chunk
        request = json.loads(data)
        conn.settimeout(None)
    except (OSError, ValueError) as e:
        _log(f"bad request: {e}")
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: becomes the command
        code = 1
        try:
            sel.close()
            listener.close()
            lock.close()
            conn.close()  # the worker keeps the command's connection; the child has its streams
            for other, pidfd in jobs.values():
                other.close()
                os.close(pidfd)
            code = _child(request, fds)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _log(f"job {pid}: {' '.join(request['argv'][:1])}")
    pidfd = os.pidfd_open(pid)
    jobs[pid] = (conn, pidfd)
    sel.register(pidfd, selectors.EVENT_READ, ("exited", pid))
    try:
        conn.sendall(f"started {pid}\n".encode())
        sel.register(conn, selectors.EVENT_READ, ("client", pid))
    except OSError:
        os.kill(pid, signal.SIGTERM)


def _reap(pid, sel, jobs) -> None:
    conn, pidfd = jobs.pop(pid)
    sel.unregister(pidfd)
    os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        sel.unregister(conn)
    except (KeyError, ValueError):
        pass
    try:
        reply = {"code": code, "max_rss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}
        conn.sendall(b"exit " + json.dumps(reply).encode() + b"\n")
    except OSError:
        pass
    conn.close()


def _child(request: dict, fds: list[int]) -> int:
    """Become the command: its streams, folder, environment and a fresh icl_probe."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    os.chdir(request["cwd"])
    sys.path[:] = request["path"]
    os.environ.clear()
    os.environ.update(request["env"])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import tempfile

    tempfile.tempdir = None  # read TMPDIR again
    for name in [m for m in sys.modules if m == "icl_probe" or m.startswith("icl_probe.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    argv = request["argv"]
    sys.argv = ["icl-probe", *argv]
    start = time.perf_counter()
    try:
        module, _, func = request["entry"].partition(":")
        code = getattr(importlib.import_module(module), func)(argv)
    except SystemExit as e:  # argparse's usage errors, sys.exit in the command
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the traceback the command would have printed
        import traceback

        traceback.print_exc()
        code = 1
    import atexit
    import resource

    atexit._run_exitfuncs()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if _is_file(2):  # in the job's log: what Snakemake's benchmark file cannot see
        print(f"warm worker: job {os.getpid()} took {time.perf_counter() - start:.2f} s, peak RSS "
              f"{usage.ru_maxrss / 1024:.0f} MiB, CPU {usage.ru_utime + usage.ru_stime:.1f} s",
              file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return int(code or 0)


def _is_file(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} warm worker {os.getpid()}: {message}",
          file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    """The worker process (started by :func:`start_worker`): ``SOCKET LOCK``."""
    serve(Path(argv[0]), Path(argv[1]), float(os.environ.get("ICL_PROBE_WARM_IDLE", IDLE_S)))
