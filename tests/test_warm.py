"""Warm workers (icl_probe.warm): a command run by a worker behaves as the command run alone.

Each test starts its own worker in its own folder, preloading nothing (ICL_PROBE_WARM_PRELOAD=""),
and runs small entry points written to a temporary module, so the tests take seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from icl_probe import warm

pytestmark = pytest.mark.skipif(not warm.enabled({}), reason="needs pidfd_open and fd passing (Linux 5.3+)")

TARGET = '''
import os, pathlib, signal, sys, time

def echo(argv):
    print("out", os.getcwd(), os.environ.get("WARM_T"), os.getppid(), *argv, flush=True)
    print("err", file=sys.stderr)
    return int(argv[0])

def hang(argv):
    d = pathlib.Path(argv[0])
    def term(signum, frame):
        (d / "terminated").write_text(str(signum))
        os._exit(143)
    signal.signal(signal.SIGTERM, term)
    (d / "started").write_text(str(os.getpid()))
    time.sleep(60)
    return 0

def die(argv):
    os.kill(os.getpid(), signal.SIGKILL)

def version(argv):
    import warm_edited
    print(warm_edited.V)
    return 0

def package_modules(argv):
    print(sorted(m for m in sys.modules if m == "icl_probe" or m.startswith("icl_probe.")))
    return 0
'''

CLIENT = ("import sys; from icl_probe import warm; rc = warm.run(sys.argv[2:], entry=sys.argv[1]); "
          "sys.exit(99 if rc is None else rc)")


@pytest.fixture
def worker(tmp_path):
    """A running worker for an environment of its own; yields (environment, worker pid)."""
    (tmp_path / "warm_target.py").write_text(TARGET)
    environ = {**os.environ, "ICL_PROBE_WARM_DIR": str(tmp_path / "w"), "ICL_PROBE_WARM_PRELOAD": "",
               "ICL_PROBE_WARM_IDLE": "30",
               "PYTHONPATH": os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    environ.pop("ICL_PROBE_WARM", None)
    pid = start(environ)
    yield environ, pid
    os.kill(pid, signal.SIGTERM)


def start(environ, timeout: float = 30) -> int:
    """Start a worker from a command like the clients (the same interpreter, environment and
    sys.path) and wait until it is ready; returns its pid."""
    code = ("import os, sys; from icl_probe import warm; warm.start_worker(dict(os.environ)); "
            "print(warm._paths(os.environ)[0])")
    sock = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          check=True).stdout.strip()
    return _wait_ready(Path(sock), timeout)


def _wait_ready(sock: Path, timeout: float = 30) -> int:
    log = sock.with_suffix(".log")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sock.exists() and log.exists() and "ready: pid" in log.read_text():
            return int(log.read_text().split("ready: pid")[-1].split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no worker came up: {log.read_text() if log.exists() else 'no log'}")


def client(environ, entry, *argv, cwd=None, **kw):
    return subprocess.run([sys.executable, "-c", CLIENT, f"warm_target:{entry}", *argv], env=environ,
                          cwd=cwd, capture_output=True, text=True, timeout=60, **kw)


def test_a_job_gets_the_commands_streams_folder_environment_and_status(worker, tmp_path):
    environ, pid = worker
    (tmp_path / "here").mkdir()
    proc = client({**environ, "WARM_T": "abc"}, "echo", "3", "x", cwd=tmp_path / "here")
    assert proc.returncode == 3
    assert proc.stdout.split() == ["out", str(tmp_path / "here"), "abc", str(pid), "3", "x"]
    assert proc.stderr.strip() == "err"  # a pipe, not a log file: no worker line
    # the same worker serves the next command, with that command's own environment
    again = client({**environ, "WARM_T": "def"}, "echo", "0")
    assert again.returncode == 0 and again.stdout.split()[2:4] == ["def", str(pid)]


def test_a_job_whose_stderr_is_a_log_file_ends_it_with_its_own_peak_memory(worker, tmp_path):
    environ, _ = worker
    log = tmp_path / "job.log"
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-c", CLIENT, "warm_target:echo", "0"], env=environ,
                            stdout=f, stderr=subprocess.STDOUT, timeout=60).returncode
    lines = log.read_text().splitlines()
    assert rc == 0 and lines[-1].startswith("warm worker: job ") and "peak RSS" in lines[-1]


def test_without_a_worker_the_command_runs_itself_and_the_second_starts_one(tmp_path):
    (tmp_path / "warm_target.py").write_text(TARGET)
    environ = {**os.environ, "ICL_PROBE_WARM_DIR": str(tmp_path / "w"), "ICL_PROBE_WARM_PRELOAD": "",
               "ICL_PROBE_WARM_IDLE": "5", "PYTHONPATH": str(tmp_path)}
    assert client(environ, "echo", "0").returncode == 99  # ran nowhere: the caller runs it
    time.sleep(1)
    assert not list((tmp_path / "w").glob("*/*.sock"))  # a one-off command starts no worker
    assert client(environ, "echo", "0").returncode == 99
    deadline = time.time() + 30
    while not list((tmp_path / "w").glob("*/*.sock")) and time.time() < deadline:
        time.sleep(0.05)
    (sock,) = (tmp_path / "w").glob("*/*.sock")
    pid = _wait_ready(sock)
    proc = client(environ, "echo", "0")
    assert proc.returncode == 0 and proc.stdout.split()[3] == str(pid)
    # idle for ICL_PROBE_WARM_IDLE seconds: the worker exits and removes its socket
    deadline = time.time() + 30
    while sock.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not sock.exists()


def test_the_job_imports_the_code_afresh(worker, tmp_path):
    environ, _ = worker
    module = tmp_path / "warm_edited.py"
    module.write_text("V = 1\n")
    assert client(environ, "version").stdout.strip() == "1"
    module.write_text("V = 22\n")  # an edit between two jobs (another size: a stale .pyc is not used)
    assert client(environ, "version").stdout.strip() == "22"
    # the worker's own icl_probe modules are dropped before the job imports the package
    assert client(environ, "package_modules").stdout.strip() == "[]"


def test_stopping_the_command_stops_the_job_and_the_command_exits_with_its_status(worker, tmp_path):
    environ, _ = worker
    for stop in (signal.SIGTERM, signal.SIGKILL):
        d = tmp_path / stop.name
        d.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", CLIENT, "warm_target:hang", str(d)], env=environ)
        deadline = time.time() + 30
        while not (d / "started").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (d / "started").exists()
        proc.send_signal(stop)
        rc = proc.wait(timeout=30)
        deadline = time.time() + 10  # SIGKILL: the worker sees the connection close
        while not (d / "terminated").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (d / "terminated").read_text() == str(int(signal.SIGTERM))
        if stop == signal.SIGTERM:  # forwarded, and the command waited for the job
            assert rc == 143
        else:
            assert rc == -signal.SIGKILL


def test_a_job_killed_by_a_signal_is_reported_as_such(worker):
    environ, _ = worker
    proc = client(environ, "die")
    assert proc.returncode == 128 + signal.SIGKILL
    assert "killed by signal 9 (SIGKILL)" in proc.stderr


def test_a_worker_is_shared_only_by_the_same_import_time_environment():
    base = {"PATH": "/usr/bin", "HOME": "/root"}
    key = warm.worker_key(base)
    assert warm.worker_key({**base, "SNAKEMAKE_JOB": "7"}) == key  # read at no import
    for name, value in [("HF_ENDPOINT", "http://127.0.0.1:1"), ("HF_HUB_OFFLINE", "1"),
                        ("OMP_NUM_THREADS", "1"), ("PYTHONPATH", "/x"), ("CUDA_VISIBLE_DEVICES", "")]:
        assert warm.worker_key({**base, name: value}) != key, name


def test_warm_workers_are_off_on_slurm_and_when_switched_off():
    assert warm.enabled({})
    assert not warm.enabled({"ICL_PROBE_WARM": "0"})
    assert not warm.enabled({"SLURM_JOB_ID": "12"})
    assert warm.enabled({"SLURM_JOB_ID": "12", "ICL_PROBE_WARM": "1"})


def test_the_probe_command_gives_the_same_results_warm_and_cold(saved_model, tmp_path):
    """The real ``icl-probe probe`` run alone and through a worker that preloads the real libraries:
    the result files are equal but for their timings."""
    import json

    from icl_probe.runner import make_prompts

    sections = {"gd_readout": {"k": 3, "n_prompts": 6}, "induction": {"block_len": 8, "n_sequences": 6}}
    settings_files = []
    for probe, section in sections.items():
        path = tmp_path / f"{probe}.json"
        path.write_text(json.dumps({"probes": {"seeds": [42, 7], "batch_size": 5, "bootstrap": 20,
                                               "external": [], "enabled": [probe], probe: section},
                                    "runtime": {"device": "cpu", "dtype": "float32"}}))
        settings_files.append(str(path))
    prompts = make_prompts(str(saved_model), None, tmp_path / "prompts",
                           {"seeds": [42, 7], "enabled": list(sections), **sections})

    def probe(out, environ):
        argv = ["probe", "--model", str(saved_model), "--revision", "step1", "--out", str(out),
                "--prompts", *map(str, prompts.values()), "--settings-file", *settings_files]
        command = "import sys; from icl_probe.cli import entry; sys.argv[0] = 'icl-probe'; entry()"
        proc = subprocess.run([sys.executable, "-c", command, *argv], env=environ,  # as start() does
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return {p: {k: v for k, v in json.loads((out / f"{p}.json").read_text()).items() if k != "timing"}
                for p in sections}

    environ = {**os.environ, "ICL_PROBE_WARM_DIR": str(tmp_path / "w")}
    environ.pop("ICL_PROBE_WARM_PRELOAD", None)
    cold = probe(tmp_path / "cold", {**environ, "ICL_PROBE_WARM": "0"})
    environ.pop("ICL_PROBE_WARM", None)
    pid = start(environ, timeout=120)
    try:
        assert probe(tmp_path / "warm", environ) == cold
        logs = list((tmp_path / "w").glob("*/*.log"))
        assert len(logs) == 1 and " job " in logs[0].read_text()  # it was the worker that ran it
    finally:
        os.kill(pid, signal.SIGTERM)
