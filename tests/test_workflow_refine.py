"""Adaptive refinement in the workflow (rules/refine.smk): the mini-suite swept coarsely with
refinement on, stopped in the middle of a round and run again, against the dense default run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from icl_probe.io import read_json
from icl_probe.minisuite.build import MODELS, RESEARCH_MODELS, branch_name, schedule
from icl_probe.aggregate import replay_refinement
from icl_probe.refine import transition_bracket
from icl_probe.stats.model import settings
from workflow_utils import env, mtimes, run_snakemake, small_config, snakemake_cmd, workdir_with_minisuite

pytestmark = pytest.mark.slow

# the transitions researchers publish brackets of (a half-max step, a zero crossing); the
# induction transition is refined in tests/test_refine.py (on the mini-suite's ~20-branch
# schedules it takes bisection to about half of them: docs/refinement.md)
COARSE = "log:4"
REFINE = {"budget": 12, "transitions": ["half_max", "zero_crossing"]}
MODELS_RUN = ("pythia-s", "olmo2-s")


def refine_config() -> dict:
    """The mini-suite test scenario (small prompt sets) on two models, each swept coarsely
    (COARSE) with refinement on."""
    cfg = small_config(MODELS_RUN, COARSE)
    cfg["suites"]["mini"]["refine"] = REFINE
    return cfg


def _finished_probe_jobs(workdir: Path) -> set[Path]:
    """Probe jobs that ran to the end: their benchmark file is written when the job ends."""
    return set(workdir.glob("logs/benchmarks/mini/*/*/probe.tsv"))


def _refined_result_exists(workdir: Path) -> bool:
    """Some round has added a revision and that revision's probe job has finished."""
    for path in workdir.glob("results/mini/*/refine/round*.json"):
        try:
            added = read_json(path)["added"]
        except (OSError, ValueError, KeyError):
            continue
        model = path.parent.parent.name
        if any((workdir / "logs/benchmarks/mini" / model / rev / "probe.tsv").exists() for rev in added):
            return True
    return False


@pytest.fixture(scope="module")
def refined_workflow(default_workflow, tmp_path_factory):
    """A refinement run stopped (SIGKILL, the whole process group) once a round's first added
    checkpoint is probed, then run again to the end. Returns (workdir, what the stop left)."""
    workdir = workdir_with_minisuite(tmp_path_factory.mktemp("refine"), default_workflow, refine_config())
    dry = run_snakemake(workdir, "-n")
    proc = subprocess.Popen(snakemake_cmd(workdir, "--cores", "2"), cwd=workdir, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not _refined_result_exists(workdir):
            assert proc.poll() is None, "the run ended before a refinement round's checkpoint was probed"
            assert time.monotonic() < deadline, "no refined checkpoint probed within 15 min"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = {"finished": _finished_probe_jobs(workdir), "results": mtimes(workdir, "results/mini/*/*/*.json"),
            "rounds": mtimes(workdir, "results/mini/*/refine/*.json"), "dry": dry.stdout + dry.stderr}
    rerun = run_snakemake(workdir, "--cores", "2")
    left["rerun"] = rerun.stdout + rerun.stderr
    return workdir, left


def test_a_dry_run_before_any_result_shows_the_coarse_pass_and_says_refinement_follows(refined_workflow):
    _, left = refined_workflow
    for model in MODELS_RUN:
        assert f"mini/{model}: refinement follows the coarse pass of 4 checkpoints" in left["dry"]
    jobs = {line.split()[0]: int(line.split()[1]) for line in left["dry"].splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["probe"] == 4 * len(MODELS_RUN)  # the coarse pass only
    assert jobs["refine"] == len(MODELS_RUN)  # round 1 of each model: the DAG grows after it


def test_a_stopped_refinement_goes_on_without_recomputing_finished_checkpoints(refined_workflow):
    workdir, left = refined_workflow
    assert left["finished"], "nothing was probed before the stop"
    after = mtimes(workdir, "results/mini/*/*/*.json")
    for path, mtime in left["results"].items():
        rev_dir = Path(path).parent
        if (workdir / "logs/benchmarks" / rev_dir.relative_to("results") / "probe.tsv") in left["finished"]:
            assert after[path] == mtime, f"{path} was recomputed"
    for path, mtime in left["rounds"].items():
        assert after[path] == mtime, f"{path} was recomputed"
    # the rerun had work left: probe jobs the stop cut short or never started, and later rounds
    assert len(_finished_probe_jobs(workdir)) > len(left["finished"])
    assert len(mtimes(workdir, "results/mini/*/refine/*.json")) > len(left["rounds"])


def test_the_run_ends_with_every_transition_bracketed_by_adjacent_branches(refined_workflow):
    workdir, _ = refined_workflow
    adjacent = 0
    for model in MODELS_RUN:
        spec = MODELS[model]
        stats = read_json(workdir / "results/mini" / model / "stats.json")
        ref = stats["refinement"]
        steps = schedule(spec.final_step, spec.interval)
        assert ref["done"] and ref["n_dense"] == len(steps)
        names = [branch_name(model, s) for s in steps]
        assert ref["analysed"] == [n for n in names if n in ref["analysed"]]  # ordered by step
        for name, state in ref["transitions"].items():
            if state["status"] == "undefined":
                assert transition_bracket(stats, name)[0] is None, (model, name)
                continue
            assert state["status"] == "adjacent", (model, name, state)
            lo, hi = state["bracket"]
            assert steps.index(hi) == steps.index(lo) + 1, (model, name, state)
            adjacent += 1
        table = (workdir / "results/mini" / model / "table.csv").read_text().splitlines()
        assert len(table) - 1 == ref["n_checkpoints"] < len(steps)
    assert adjacent >= 1


@pytest.fixture(scope="module")
def replayed(default_workflow):
    """Refinement replayed on the dense default run's results (``replay_refinement``, as in
    benchmarks/refine_savings.py: the rounds' own decisions, reading the dense run's
    per-checkpoint results instead of probing), from COARSE; per model, with the dense
    sweep's statistics."""
    results = default_workflow / "results"
    cfg = settings(read_json(results / "settings" / "stats.json"))
    return {m: replay_refinement(results / "mini" / m, cfg, COARSE, REFINE) for m in RESEARCH_MODELS}


def test_on_the_dense_runs_results_refinement_needs_at_most_40_percent_of_the_checkpoints(replayed):
    used = dense = 0
    for model, out in replayed.items():
        ref = out["record"]
        steps = schedule(MODELS[model].final_step, MODELS[model].interval)
        for name, state in ref["transitions"].items():
            if state["status"] == "undefined":  # then the dense sweep has no such transition either
                assert transition_bracket(out["dense"], name)[0] is None, (model, name)
                continue
            assert state["status"] == "adjacent", (model, name, state)
            assert state["bracket"] == transition_bracket(out["dense"], name)[0], (model, name)
            assert steps.index(state["bracket"][1]) == steps.index(state["bracket"][0]) + 1
        used += ref["n_checkpoints"]
        dense += ref["n_dense"]
    assert dense == sum(len(schedule(m.final_step, m.interval)) for m in (MODELS[n] for n in RESEARCH_MODELS))
    assert used <= 0.4 * dense, f"{used} of {dense} checkpoints"


def test_the_refined_half_max_step_equals_the_dense_sweeps(replayed):
    for model, out in replayed.items():
        st, dense = out["final"]["statistics"], out["dense"]["statistics"]
        assert st["half_max_step"] == dense["half_max_step"], model
        assert st["half_max_bracket"] == dense["half_max_bracket"], model
        # the level is half the peak over the checkpoints analysed, which a subset can only
        # underestimate; where the subset holds the dense sweep's peak the interpolation is the same
        assert st["peak_er"] <= dense["peak_er"], model
        if st["peak_step"] == dense["peak_step"]:
            assert st["half_max_step_interp"] == pytest.approx(dense["half_max_step_interp"], rel=1e-9), model


def test_a_finished_refinement_is_up_to_date_and_says_nothing_more(refined_workflow):
    workdir, _ = refined_workflow
    dry = run_snakemake(workdir, "-n")
    out = dry.stdout + dry.stderr
    assert "Nothing to be done" in out
    assert "refinement follows" not in out and "refinement round" not in out
