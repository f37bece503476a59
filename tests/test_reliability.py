"""Reliability of the workflow: a killed run resumes, one checkpoint reruns alone, runs repeat exactly.

These run Snakemake on a few checkpoints of the mini-suite, reusing the models that the
default end-to-end run built (copied into each working folder).
"""

import json
import shutil
import os
import signal
import subprocess
import time

import pytest
import yaml

from icl_probe.probes.registry import BUILTIN
from workflow_utils import env, mtimes, run_snakemake, small_config, snakemake_cmd, workdir_with_minisuite

PROBES = BUILTIN
VOLATILE = ("timing", "provenance")


def _finished_checkpoints(results):
    """Revision folders that hold every probe's result."""
    return sorted(d for d in _revision_dirs(results) if all((d / f"{p}.json").exists() for p in PROBES))


def _revision_dirs(results):
    """The models' revision folders (not their prompts/ folder, which holds one file per probe too)."""
    return [d for d in results.glob("mini/*/*") if d.is_dir() and d.name != "prompts"]


def _stable(path):
    res = json.loads(path.read_text())
    return {k: v for k, v in res.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def resumed_run(default_workflow, tmp_path_factory):
    """A small sweep killed with SIGKILL after its first finished checkpoint, then run again."""
    workdir = workdir_with_minisuite(tmp_path_factory.mktemp("killed"), default_workflow, small_config())
    results = workdir / "results"
    proc = subprocess.Popen(snakemake_cmd(workdir, "--cores", "1"), cwd=workdir, start_new_session=True, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    # one job at a time: once a second checkpoint is complete, Snakemake has recorded the
    # first as finished (the newest may have its files written but not yet be recorded)
    while len(_finished_checkpoints(results)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    complete = _finished_checkpoints(results)
    newest = max(complete, key=lambda d: max(p.stat().st_mtime_ns for p in d.glob("*.json")))
    finished = [d for d in complete if d != newest]
    before = mtimes(results)
    for name in before:  # nothing under results is half-written
        if name.endswith(".json"):
            json.loads((results / name).read_text())
    rerun = run_snakemake(workdir, "--cores", "2")  # the same command, nothing else
    return workdir, finished, before, rerun


@pytest.mark.slow
def test_killed_sweep_resumes_without_recomputing_finished_checkpoints(resumed_run):
    workdir, finished, before, rerun = resumed_run
    results = workdir / "results"
    assert finished, "no checkpoint had finished when the run was killed"
    after = mtimes(results)
    for folder in finished:
        for probe in PROBES:
            name = str((folder / f"{probe}.json").relative_to(results))
            assert after[name] == before[name], f"{name} was recomputed"
    assert (results / "mini" / "figures" / "emergence.png").exists()
    for model in ("pythia-s", "olmo2-s"):
        assert (results / "mini" / model / "stats.json").exists()


@pytest.mark.slow
def test_rerun_of_one_checkpoint_changes_exactly_it_and_its_aggregates(resumed_run):
    workdir, *_ = resumed_run
    results = workdir / "results"
    revision = sorted(p.name for p in _revision_dirs(results) if p.parent.name == "pythia-s")[0]
    target = f"results/mini/pythia-s/{revision}/gd_readout.json"
    before = mtimes(results)
    run_snakemake(workdir, "--cores", "2", "--forcerun", target)
    after = mtimes(results)
    changed = {name for name in before if after.get(name) != before[name]}
    expected = {f"mini/pythia-s/{revision}/{p}.json" for p in PROBES}
    expected |= {f"mini/pythia-s/{n}" for n in ("table.csv", "table.parquet", "layers.csv", "stats.json", "qc.json")}
    figures = {name for name in before if name.startswith("mini/figures/")}
    assert changed - figures == expected
    assert "mini/figures/emergence.png" in changed


@pytest.mark.slow
def test_two_runs_of_one_config_give_identical_results(resumed_run, minisuite_scenario):
    workdir, *_ = resumed_run
    fresh = minisuite_scenario  # small_config() is this scenario, run afresh in one go
    ours = sorted(p for d in _revision_dirs(workdir / "results") for p in d.glob("*.json"))
    assert len(ours) == 2 * 3 * len(PROBES)
    for path in ours:
        twin = fresh / path.relative_to(workdir)
        assert _stable(path) == _stable(twin), f"{path.relative_to(workdir)} differs between runs"
    for model in ("pythia-s", "olmo2-s"):
        rel = f"results/mini/{model}/table.csv"
        assert (workdir / rel).read_bytes() == (fresh / rel).read_bytes()


@pytest.mark.slow
def test_damaged_minisuite_checkpoint_is_named_and_the_advised_fix_works(tmp_path):
    """A truncated weight file stops its probe job with a message naming the file and the folder
    to delete; doing what it says (delete, run again) rebuilds the model and finishes the sweep.
    (The smoke-test model, which builds in seconds: the build is run twice.)"""
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config(models=("pythia-xs",), revisions="log:2"),
                                                        sort_keys=False))
    folder = "resources/minisuite/hub/models--mini--pythia-xs"
    run_snakemake(workdir, "--cores", "2", folder)  # the build alone
    repo = workdir / folder
    blob = (repo / "snapshots" / (repo / "refs" / "main").read_text() / "model.safetensors").resolve()
    size = blob.stat().st_size
    with open(blob, "r+b") as f:
        f.truncate(size // 2)
    failed = run_snakemake(workdir, "--cores", "2", check=False)
    assert failed.returncode != 0
    log = (workdir / "logs" / "mini" / "pythia-xs").glob("*/probe.log")
    messages = "".join(p.read_text() for p in log)
    assert "model.safetensors is truncated" in messages
    assert "models--mini--pythia-xs and run the workflow again" in messages
    assert "Traceback" not in messages
    shutil.rmtree(repo)  # what the message says to do
    run_snakemake(workdir, "--cores", "2")
    assert len(_finished_checkpoints(workdir / "results")) == 2
    assert (repo / "icl_probe_build.json").exists()
    rebuilt = (repo / "snapshots" / (repo / "refs" / "main").read_text() / "model.safetensors").resolve()
    assert rebuilt.stat().st_size == size  # the same bytes again (deterministic build)
