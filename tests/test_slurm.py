"""The workflow through a real Slurm scheduler: a one-node cluster on this machine.

tests/slurm/setup.sh installs munge and Slurm from the distribution's packages
(apt-get) and starts munged, slurmctld and slurmd as root; the test installs
snakemake-executor-plugin-slurm into the running interpreter's environment, runs
a small config (tests/slurm/config.yaml) with ``--profile profiles/slurm``, checks
in the scheduler's own job-completion record that every job snakemake submitted
ran there and completed, then runs the same config locally and compares the
per-checkpoint results. The cluster is stopped at the end (if the test started it).

Skipped only when not root or when Slurm is neither installed nor installable
with apt-get; everywhere else (CI runs as root on Debian) a cluster that does not
come up is a failure, reported with the daemons' logs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from icl_probe.probes.registry import BUILTIN

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
PLUGIN = "snakemake-executor-plugin-slurm>=2,<3"
# the rest (settings, resolve, prompts, aggregate, figures) are localrules: they run in the snakemake process
RULES_ON_SLURM = {"build_minisuite", "probe"}
MODEL_DIR = Path("results") / "mini" / "pythia-xs"
IGNORED_KEYS = {"timing", "provenance"}

pytestmark = pytest.mark.slow


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: installs Slurm and munge and starts their daemons"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    return None


def _run(cmd, *, env=None, cwd=None, timeout=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _daemon_running(state: Path) -> bool:
    pid = state / "slurmctld.pid"
    try:
        os.kill(int(pid.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster; yields its state folder (logs, jobcomp.txt)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pip = _run([sys.executable, "-m", "pip", "install", "--quiet", PLUGIN], timeout=600)
        if pip.returncode != 0:
            pytest.fail(f"pip install {PLUGIN} failed:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}")
    state = Path(os.environ.get("ICL_SLURM_STATE", "/tmp/icl-probe-slurm"))
    started_here = not _daemon_running(state)
    t0 = time.monotonic()
    setup = _run(["bash", str(SLURM_DIR / "setup.sh"), str(state)], timeout=900)
    if setup.returncode != 0:
        _run(["bash", str(SLURM_DIR / "teardown.sh"), str(state)], timeout=120)
        pytest.fail(f"Slurm did not come up (tests/slurm/setup.sh exit {setup.returncode}):\n"
                    f"{setup.stdout[-4000:]}\n{setup.stderr[-12000:]}")
    print(f"slurm cluster ready in {time.monotonic() - t0:.0f}s\n{setup.stderr[-1500:]}")
    yield state
    if started_here:
        down = _run(["bash", str(SLURM_DIR / "teardown.sh"), str(state)], timeout=120)
        print(down.stderr)


def _env() -> dict:
    """This interpreter's bin folder first on PATH: `icl-probe` and `python -m snakemake`
    in the jobs come from the same environment (sbatch --export=ALL passes it on)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SLURM_JOB_ID", None)
    return env


def _workdir(path: Path, cache_dir: Path) -> Path:
    config = yaml.safe_load((SLURM_DIR / "config.yaml").read_text())
    config["minisuite"]["cache_dir"] = str(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), *args]
    proc = _run(cmd, env=_env(), cwd=workdir, timeout=timeout)
    if proc.returncode != 0:
        def tails(pattern, n):
            return "\n".join(f"== {p}\n{p.read_text(errors='replace')[-n:]}"
                             for p in sorted(workdir.glob(pattern)))
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-6000:]}\n"
                             f"{tails('logs/**/*.log', 3000)[-8000:]}\n"
                             f"{tails('.snakemake/slurm_logs/**/*.log', 1200)[-4000:]}")
    return proc


def _jobcomp(state: Path) -> dict[str, dict[str, str]]:
    """The scheduler's job-completion record (JobCompType=jobcomp/filetxt): JobId -> fields."""
    records = {}
    for line in (state / "jobcomp.txt").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            records[fields["JobId"]] = fields
    return records


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in IGNORED_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _differences(a, b, where="") -> list[str]:
    """Where two JSON values differ (floats equal up to 1e-9 relative, NaN == NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only in one" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += _differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_workflow_through_slurm_equals_local_run(slurm_cluster, tmp_path):
    state = slurm_cluster
    cache_dir = tmp_path / "minisuite-hub"   # built by the Slurm run, reused by the local run
    on_slurm = _workdir(tmp_path / "slurm", cache_dir)
    local = _workdir(tmp_path / "local", cache_dir)

    t0 = time.monotonic()
    proc = _snakemake(
        on_slurm, "--profile", str(REPO / "profiles" / "slurm"),
        "--slurm-status-command", "squeue",          # no slurmdbd here, so no sacct database
        "--slurm-init-seconds-before-status-checks", "5",
        "--slurm-no-account", "--slurm-keep-successful-logs",
        "--jobs", "4", "--retries", "0",
        timeout=900)
    slurm_s = time.monotonic() - t0
    out = proc.stdout + proc.stderr

    # every job snakemake submitted, with the rule from its Slurm log path
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    submitted = dict(re.findall(
        r"has been submitted with SLURM jobid (\d+) \(log: \S*/rule_([A-Za-z_]+)/", out))
    assert submitted, out[-4000:]
    assert set(submitted.values()) == RULES_ON_SLURM, submitted
    manifest = json.loads((on_slurm / MODEL_DIR / "manifest.json").read_text())
    revisions = [e["revision"] for e in manifest["revisions"] if not e.get("duplicate_of")]
    assert list(submitted.values()).count("probe") == len(revisions) >= 4, (submitted, revisions)

    # ... each one in the scheduler's own record: this run's job name, completed, this workdir
    records = _jobcomp(state)
    missing = sorted(set(submitted) - set(records))
    assert not missing, f"submitted but not in {state / 'jobcomp.txt'}: {missing}"
    for jobid, rule in submitted.items():
        rec = records[jobid]
        assert rec["Name"] == run_id, (jobid, rule, rec)
        assert rec["JobState"] == "COMPLETED", (jobid, rule, rec)
        assert rec["ExitCode"] == "0:0", (jobid, rule, rec)
        assert Path(rec["WorkDir"]).resolve() == on_slurm.resolve(), (jobid, rule, rec)
    # and the same through sacct, where this Slurm reads that record (`sacct -c`)
    sacct = _run(["sacct", "-c", "-n", "-P", "-o", "JobID,JobName,State"])
    if sacct.returncode == 0:
        rows = {line.split("|")[0]: line.split("|") for line in sacct.stdout.splitlines() if line}
        assert all(rows[j][1] == run_id and rows[j][2] == "COMPLETED" for j in submitted), sacct.stdout
    print(f"slurm run {run_id}: {len(submitted)} jobs in {slurm_s:.0f}s: "
          + ", ".join(f"{j}={r}" for j, r in sorted(submitted.items(), key=lambda x: int(x[0]))))

    # the same config, locally, on the same built mini-suite
    t0 = time.monotonic()
    _snakemake(local, "--cores", "2", timeout=900)
    print(f"local run: {time.monotonic() - t0:.0f}s")

    for name in ("table.csv", "stats.json", "qc.json"):
        assert (on_slurm / MODEL_DIR / name).exists() and (local / MODEL_DIR / name).exists(), name
    assert (on_slurm / "results" / "mini" / "figures" / "emergence.png").exists()
    def results_of(root):  # the per-checkpoint results (not the prompts/ folder's files)
        return sorted(p.relative_to(root / MODEL_DIR) for p in (root / MODEL_DIR).glob("*/*.json")
                      if p.parent.name != "prompts")

    slurm_files, local_files = results_of(on_slurm), results_of(local)
    probes = yaml.safe_load((SLURM_DIR / "config.yaml").read_text())["probes"].get("enabled", BUILTIN)
    expected = sorted(Path(rev) / f"{probe}.json" for rev in revisions for probe in probes)
    assert slurm_files == local_files == expected, (slurm_files, local_files)
    diffs = {}
    for rel in slurm_files:
        a = _strip(json.loads((on_slurm / MODEL_DIR / rel).read_text()))
        b = _strip(json.loads((local / MODEL_DIR / rel).read_text()))
        if d := _differences(a, b):
            diffs[str(rel)] = d[:5]
    assert not diffs, f"per-checkpoint results differ between the Slurm and the local run: {diffs}"
