"""The workflow end to end: the default config, run by Snakemake in a temporary folder."""

import json
import math
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from workflow_utils import REPO, run_snakemake, scenario_config

FIGURE_NAMES = ("emergence", "coemergence", "contraction", "lifecycle", "layer_readout")


def _job_counts(out: str) -> dict[str, int]:
    """The `job  count` table of a Snakemake (dry) run."""
    return {k: int(v) for k, v in (line.split() for line in out.splitlines()
                                   if re.fullmatch(r"\w+\s+\d+", line.strip()))}


def test_lint_is_clean(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    proc = run_snakemake(tmp_path, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


def test_snakefmt_check_is_clean():
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *map(str, files)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{proc.stdout}\n{proc.stderr}"


def test_presets_scenario_dry_run_plans_both_suites_offline(tmp_path, monkeypatch):
    """.test/config_presets: a Pythia and an OLMo-2 suite on recorded branch lists plan every job
    without the network (an endpoint that refuses connections would fail any Hub call)."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = run_snakemake(tmp_path, "-n", "-p", "--configfile", str(REPO / ".test" / "config_presets" / "config.yaml"))
    counts = _job_counts(proc.stdout + proc.stderr)
    # pythia-14m log:4 + pythia-70m's 3 named branches + olmo2-1b log:5 (stage 1), each fetched and probed
    assert counts["fetch"] == counts["probe"] == 4 + 3 + 5
    assert counts["resolve"] == counts["aggregate"] == 3 and counts["prompts"] == 3 * 4  # per model and probe
    assert counts["settings"] == 4 + 1 and "build_minisuite" not in counts
    # one figures job per suite, each drawing its own models into its own folder (never the other's)
    assert counts["figures"] == 2
    figure_jobs = sorted(re.findall(r"icl-probe figures --model-dirs (.*?) --stats.* --out (\S+)", proc.stdout))
    assert figure_jobs == [("results/olmo2/olmo2-1b", "results/olmo2/figures"),
                           ("results/pythia/pythia-14m results/pythia/pythia-70m", "results/pythia/figures")]
    assert not (tmp_path / "results").exists()


def test_a_configfile_extends_config_yaml_and_config_values_are_coerced(tmp_path):
    """A --configfile holding one key extends config.yaml (the mini-suite stays); a --config
    value reaches the jobs as the schema's type; a preset's suites replace config.yaml's."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "mine.yaml").write_text("runtime: {device: cpu}\nprobes: {induction: {block_len: 8}}\n")
    run_snakemake(tmp_path, "--cores", "1", "--configfile", "mine.yaml",
                  "--config", "probes={batch_size: 8, gd_readout: {k: 3}}",
                  "--", "results/settings/probes/gd_readout.json", "results/settings/probes/induction.json")
    gd = json.loads((tmp_path / "results" / "settings" / "probes" / "gd_readout.json").read_text())["probes"]
    assert gd["batch_size"] == 8 and gd["gd_readout"]["k"] == 3 and gd["gd_readout"]["n_prompts"] == 80
    ind = json.loads((tmp_path / "results" / "settings" / "probes" / "induction.json").read_text())["probes"]
    assert ind["induction"] == {"block_len": 8, "n_sequences": 48}
    out = run_snakemake(tmp_path, "-n", "--configfile", "mine.yaml").stdout
    assert "mini/pythia-m" in out  # config.yaml's suites are still there
    out = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "presets" / "olmo2.yaml")).stdout
    assert "results/mini/" not in out and "results/olmo2/olmo2-7b/manifest.json" in out
    # the 7B's first branches, as the Hub names them (no stage prefix), are in its log:12 sweep
    for name in ("step150-tokens1B", "step600-tokens3B", "step2000-tokens9B"):
        assert f"results/olmo2/olmo2-7b/{name}/gd_readout.json" in out


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
    counts = _job_counts(out)
    assert counts["probe"] == counts["fetch"] == 108 and counts["resolve"] == 9
    assert "build_minisuite" not in out
    # the sweep's schedule (benchmarks/sweep_overlap.py): every download holds one unit of the
    # `fetch` resource (runtime.downloads_at_once at a time) and every probe job goes before it
    blocks = {rule: [b for b in re.split(r"\n(?=\[)", out) if re.search(rf"^(local)?rule {rule}:", b, re.M)]
              for rule in ("fetch", "probe", "prompts")}
    assert len(blocks["fetch"]) == len(blocks["probe"]) == 108 and blocks["prompts"]
    assert all(re.search(r"resources: .*\bfetch=1\b", b) and "priority:" not in b for b in blocks["fetch"])
    assert all("priority: 1" in b for b in blocks["probe"] + blocks["prompts"])


@pytest.mark.slow
def test_default_run_console_is_short_and_ends_with_the_summary(default_workflow):
    """One line per job start and end (no rule blocks, no shell commands), then the summary."""
    lines = (default_workflow / "console.txt").read_text().splitlines()
    assert len(lines) < 300, len(lines)
    assert not [ln for ln in lines if ln.startswith(("Shell command:", "Select jobs", "    reason:", "localrule "))]
    assert max(map(len, lines)) <= 200
    n_jobs = sum(1 for ln in lines if re.fullmatch(r"\[\d\d:\d\d:\d\d\] probe mini/pythia-s/\S+ started", ln))
    assert n_jobs >= 8  # one line per probe job of the model
    assert re.search(r"^\[\d\d:\d\d:\d\d\] all done \((\d+) of \1 jobs, 100%\)$", "\n".join(lines), re.M)
    summary = lines[lines.index(next(ln for ln in lines if ln.startswith("icl-probe summary of results/"))):]
    assert any(ln.split()[:1] == ["mini/pythia-s"] for ln in summary)
    assert summary[-1].startswith("Report: snakemake --report results/mini/report.html")


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
        png = results / "mini" / "figures" / f"{name}.png"
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
        assert (results / "mini" / "figures" / f"{name}.pdf").exists()


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


@pytest.mark.slow
def test_unchanged_config_reruns_nothing_and_a_changed_setting_only_what_reads_it(minisuite_scenario, tmp_path):
    """Settings reach the jobs as results/settings/probes/{probe}.json and stats.json: a finished run
    has nothing to do; a changed statistics threshold reruns the aggregates only, a changed probe
    setting that probe's settings file and prompts (one per model), and the probe jobs too."""
    workdir = minisuite_scenario
    assert "Nothing to be done" in run_snakemake(workdir, "-n").stdout
    settings = json.loads((workdir / "results" / "settings" / "stats.json").read_text())
    assert settings["bootstrap"] == 50 and settings["n_seeds"] == 2
    probes = json.loads((workdir / "results" / "settings" / "probes" / "gd_readout.json").read_text())
    assert probes["probes"]["gd_readout"]["n_prompts"] == 16 and probes["runtime"]["device"] == "cpu"

    def dry_run_with(edit):
        cfg = scenario_config("minisuite")
        edit(cfg)
        path = tmp_path / "changed.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return _job_counts(run_snakemake(workdir, "-n", "--configfile", str(path)).stdout)

    counts = dry_run_with(lambda cfg: cfg["stats"].update(tau_min=0.2))
    assert counts == {"settings": 1, "aggregate": 2, "figures": 1, "all": 1, "total": 5}
    counts = dry_run_with(lambda cfg: cfg["probes"]["gd_readout"].update(n_prompts=12))
    assert counts == {"settings": 1, "prompts": 2, "probe": 6, "aggregate": 2, "figures": 1, "all": 1, "total": 13}


@pytest.mark.slow
def test_heavy_jobs_write_benchmarks_and_figures_their_captions(minisuite_scenario, default_workflow):
    bench = minisuite_scenario / "logs" / "benchmarks" / "mini"
    tsvs = sorted(bench.glob("*/*/probe.tsv"))
    assert len(tsvs) == 2 * 3
    header, row = tsvs[0].read_text().splitlines()[:2]
    assert header.split("\t")[:3] == ["s", "h:m:s", "max_rss"] and float(row.split("\t")[0]) > 0
    assert len(list((default_workflow / "logs" / "benchmarks" / "minisuite").glob("*.tsv"))) == 3
    figures = minisuite_scenario / "results" / "mini" / "figures"
    for name in FIGURE_NAMES:
        caption = (figures / f"{name}.rst").read_text()
        assert len(caption) > 100 and "{{" not in caption, name
    assert "hollow diamond" in (figures / "emergence.rst").read_text()  # the generated text, not a static one


@pytest.mark.slow
def test_report_opens_with_the_workflow_and_shows_the_generated_captions(minisuite_scenario):
    proc = run_snakemake(minisuite_scenario, "--report", "report.html")
    assert "Report created" in proc.stdout + proc.stderr
    page = (minisuite_scenario / "report.html").read_text()
    assert "runs four probes" in page and "pythia-s" in page  # report/workflow.rst, with this run's suites
    # it opens on that description (the landing page shows it when the profile's metadata is set)
    assert "result schema version" in page
    assert "tables.html" in page and "Summary" in page  # the summary and QC tables
    for name in FIGURE_NAMES:
        first_words = " ".join((minisuite_scenario / "results" / "mini" / "figures" / f"{name}.rst").read_text().split()[:6])
        assert first_words in page, name
    assert "snakemake.output" not in page and "System Message" not in page  # every include resolved


def _result_bytes(root, names) -> dict:
    """The result files (not the prompt files) of the probes ``names``, path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for name in names
            for p in sorted((root / "results").glob(f"*/*/*/{name}.json")) if p.parent.name != "prompts"}


@pytest.mark.slow
def test_the_example_probe_runs_through_the_workflow_beside_ours(minisuite_scenario, tmp_path):
    """docs/examples/counting.py, named in probes.external and enabled on the finished scenario:
    only its settings, prompts and results are made (ours stay byte for byte), it lands in the
    table and a figure; disabled again, its files stay on disk but leave the table."""
    from icl_probe.probes.registry import BUILTIN

    workdir = tmp_path / "w"
    shutil.copytree(minisuite_scenario, workdir, symlinks=True)
    ours = _result_bytes(workdir, BUILTIN)
    assert len(ours) == 4 * 6
    cfg = scenario_config("minisuite")
    cfg["probes"].update(external=[str(REPO / "docs" / "examples" / "counting.py")],
                         enabled=[*BUILTIN, "counting"])
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    dry = run_snakemake(workdir, "-n").stdout
    # settings: probes/counting.json and stats.json (its probe list); ours are unchanged
    assert _job_counts(dry) == {"settings": 2, "prompts": 2, "probe": 6, "aggregate": 2, "figures": 1,
                                "all": 1, "total": 14}
    made = re.findall(r"output: (\S+)", dry)
    assert any(o.endswith("prompts/counting.json") for o in made)
    assert not any(o.endswith("prompts/gd_readout.json") or o.endswith("probes/gd_readout.json") for o in made)
    run_snakemake(workdir, "--cores", "2")
    assert _result_bytes(workdir, BUILTIN) == ours
    assert len(_result_bytes(workdir, ["counting"])) == 6
    logs = [p.read_text() for p in sorted(workdir.glob("logs/mini/*/*/probe.log"))]
    assert len(logs) == 6 and all("counting: computed" in t and "gd_readout: kept" in t for t in logs)
    for model in ("pythia-s", "olmo2-s"):
        table = pd.read_csv(workdir / "results" / "mini" / model / "table.csv")
        assert table["count_acc"].between(0, 1).all() and (table["count_logp"] <= 0).all()
        recorded = sorted(json.loads(p.read_text())["scalars"]["count_logp"]
                          for p in (workdir / "results" / "mini" / model).glob("*/counting.json")
                          if p.parent.name != "prompts")
        assert len(recorded) == 3 and sorted(table["count_logp"]) == pytest.approx(recorded, rel=1e-12)
    assert (workdir / "results" / "mini" / "figures" / "probe_scalars.png").stat().st_size > 10_000
    assert "counting" in (workdir / "results" / "mini" / "figures" / "probe_scalars.rst").read_text()

    cfg["probes"]["enabled"] = list(BUILTIN)  # disabled again: the table is made from ours only
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(workdir, "--cores", "2")
    assert len(_result_bytes(workdir, ["counting"])) == 6  # never deleted
    table = pd.read_csv(workdir / "results" / "mini" / "pythia-s" / "table.csv")
    assert "count_acc" not in table.columns
    assert _result_bytes(workdir, BUILTIN) == ours
