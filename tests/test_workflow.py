"""The workflow end to end: the default config, run by Snakemake in a temporary folder."""

import json
import math
import re
import shutil

import pandas as pd
import pytest
from workflow_utils import REPO, run_snakemake


def test_lint_is_clean(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    proc = run_snakemake(tmp_path, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job_with_the_key_named(tmp_path):
    text = (REPO / "config.yaml").read_text().replace("dtype: float32", "dtype: float8")
    (tmp_path / "config.yaml").write_text(text)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "runtime.dtype" in out and "bfloat16" in out
    assert not (tmp_path / "results").exists()


def test_cuda_on_a_machine_without_one_fails_before_any_job(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the workflow sees no GPU, on any machine
    text = (REPO / "config.yaml").read_text().replace("device: cpu", "device: cuda")
    (tmp_path / "config.yaml").write_text(text)
    assert run_snakemake(tmp_path, "-n").returncode == 0  # a dry run (or a cluster submit host) is fine
    proc = run_snakemake(tmp_path, "--cores", "2", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "runtime.device" in out and "set runtime.device: cpu" in out and "Traceback" not in out
    assert not (tmp_path / "logs").exists() and not (tmp_path / "resources").exists()  # no job ran


def test_preset_dry_run_builds_the_whole_sweep_offline(tmp_path):
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "presets" / "pythia.yaml"))
    out = proc.stdout + proc.stderr
    # nine sizes x 12 log-spaced branches, each fetched and probed; the mini-suite is not merged in
    counts = dict(line.split() for line in out.splitlines() if re.fullmatch(r"\w+\s+\d+", line.strip()))
    assert counts["probe"] == counts["fetch"] == "108" and counts["resolve"] == "9"
    assert "build_minisuite" not in out


@pytest.mark.slow
def test_default_workflow_writes_tables_and_figures_with_finite_numbers(default_workflow):
    results = default_workflow / "results"
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
@pytest.mark.parametrize("model", ["pythia-s", "pythia-m", "olmo2-s"])
def test_probes_see_what_training_put_in_the_mini_suite(default_workflow, model):
    """Induction accuracy near chance at step 0 and high at the final checkpoint; the GD
    readout's error reduction higher at the final checkpoint than at step 0."""
    from icl_probe.minisuite.tokenizer import build_tokenizer
    from icl_probe.prompts import ordinary_token_ids

    table = pd.read_csv(default_workflow / "results" / "mini" / model / "table.csv")
    first, last = table.iloc[0], table.iloc[-1]
    assert first["step"] == 0 and last["step"] == table["step"].max()
    chance = 1 / len(ordinary_token_ids(build_tokenizer()))  # the probe draws its tokens uniformly from these
    assert first["induction_acc"] < 3 * chance, first["induction_acc"]
    # high: 100 x chance (pythia-s, whose two parallel-residual layers form only a partial
    # induction circuit, ends near 0.35; pythia-m and olmo2-s near 0.9)
    assert last["induction_acc"] > max(0.3, 100 * chance), table[["step", "induction_acc"]].to_string()
    assert last["error_reduction"] > first["error_reduction"] + 0.5


@pytest.mark.slow
def test_second_run_has_nothing_to_do(default_workflow):
    proc = run_snakemake(default_workflow, "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr
