"""Stale Snakemake locks of killed runs are cleared; live or foreign locks are kept."""

import socket
import subprocess
import sys

from icl_probe.locks import OWNER_FILE, clear_stale_locks, record_owner


def _locked_state(tmp_path, host, pid):
    state = tmp_path / ".snakemake"
    (state / "locks").mkdir(parents=True)
    (state / "locks" / "0.output.lock").write_text("results/x.json\n")
    (state / OWNER_FILE).write_text(f"{host} {pid}\n")
    return state


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_of_a_killed_run_is_removed(tmp_path):
    state = _locked_state(tmp_path, socket.gethostname(), _dead_pid())
    assert clear_stale_locks(state)
    assert not list((state / "locks").glob("*.lock"))


def test_lock_of_a_live_snakemake_is_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "snakemake"])
    try:
        state = _locked_state(tmp_path, socket.gethostname(), live.pid)
        assert not clear_stale_locks(state)
        assert (state / "locks" / "0.output.lock").exists()
    finally:
        live.kill()
        live.wait()


def test_lock_from_another_host_or_without_owner_is_kept(tmp_path):
    state = _locked_state(tmp_path, "some-other-node", _dead_pid())
    assert not clear_stale_locks(state)
    (state / OWNER_FILE).unlink()
    assert not clear_stale_locks(state)
    assert (state / "locks" / "0.output.lock").exists()


def test_record_owner_names_this_host_and_process(tmp_path):
    record_owner(tmp_path / ".snakemake", pid=1234)
    assert (tmp_path / ".snakemake" / OWNER_FILE).read_text().split() == [socket.gethostname(), "1234"]
