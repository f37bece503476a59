"""Running the workflow from tests: Snakemake in a temporary working folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def env() -> dict[str, str]:
    """The environment of a workflow run: this Python's scripts (icl-probe) first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [*SNAKEMAKE, "--directory", str(workdir), *args]


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; on failure, raise with its output and the job logs."""
    cmd = snakemake_cmd(workdir, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env())
    if check and proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted(workdir.glob("logs/**/*.log")))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}\n{logs[-8000:]}")
    return proc


def scenario_config(name: str) -> dict:
    """The test scenario ``.test/config_{name}/config.yaml`` (minisuite, hub, presets)."""
    with open(REPO / ".test" / f"config_{name}" / "config.yaml") as f:
        return yaml.safe_load(f)


def small_config(models=("pythia-s", "olmo2-s"), revisions="log:3") -> dict:
    """The minisuite test scenario (the default config cut down to a few checkpoints and
    small prompt sets), optionally with other mini-suite models or revisions."""
    cfg = scenario_config("minisuite")
    cfg["suites"]["mini"]["models"] = {
        m: {"repo_id": f"mini/{m}", "revisions": revisions} for m in models}
    return cfg


def workdir_with_minisuite(path: Path, built: Path, config: dict) -> Path:
    """A working folder holding a copy of an already built mini-suite and ``config``."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built / "resources", path / "resources", symlinks=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mtimes(root: Path, pattern: str = "**/*") -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob(pattern) if p.is_file()}
