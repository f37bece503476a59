"""The workflow end to end: the default config, run by Snakemake in a temporary folder."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted(workdir.glob("logs/**/*.log")))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-6000:]}\n{logs[-8000:]}")
    return proc


def test_lint_is_clean(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    proc = _snakemake(tmp_path, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job_with_the_key_named(tmp_path):
    text = (REPO / "config.yaml").read_text().replace("dtype: float32", "dtype: float8")
    (tmp_path / "config.yaml").write_text(text)
    proc = _snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "runtime.dtype" in out and "bfloat16" in out
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    first = _snakemake(workdir, "--cores", "2")
    return workdir, first


@pytest.mark.slow
def test_default_workflow_writes_tables_and_figures_with_finite_numbers(default_run):
    workdir, _ = default_run
    results = workdir / "results"
    for model in ("pythia-s", "pythia-m", "olmo2-s"):
        table = pd.read_csv(results / "mini" / model / "table.csv")
        manifest = json.loads((results / "mini" / model / "manifest.json").read_text())
        assert len(table) == len([e for e in manifest["revisions"] if not e.get("duplicate_of")]) >= 8
        assert table["step"].is_monotonic_increasing
        for col in ("error_reduction", "induction_acc", "sink_rate_eps", "ar_acc"):
            assert table[col].map(math.isfinite).all(), (model, col)
        # the mini-suite learns the task: the GD readout improves over training
        assert table["error_reduction"].iloc[-1] > table["error_reduction"].iloc[0]
    for name in ("emergence", "coemergence", "contraction", "lifecycle", "layer_readout"):
        png = results / "figures" / f"{name}.png"
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
        assert (results / "figures" / f"{name}.pdf").exists()


@pytest.mark.slow
def test_second_run_has_nothing_to_do(default_run):
    workdir, _ = default_run
    proc = _snakemake(workdir, "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr
