"""The console of a workflow run: one line per job start and end; errors and dry runs in full."""

import re
import subprocess
import sys

SNAKEFILE = '''
onstart:
    from snakemake.logging import logger as snakemake_logger
    from icl_probe import console

    console.install(snakemake_logger)

rule all:
    input: expand("out/{name}.txt", name=["a", "b"])

rule make:
    output: "out/{name}.txt"
    log: "logs/{name}.log"
    shell: "echo made {wildcards.name} > {output}; if [ {wildcards.name} = $FAIL ]; then echo boom >&2; exit 3; fi"
'''
TIME = r"\[\d\d:\d\d:\d\d\]"


def _run(tmp_path, *args, fail="none"):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={"FAIL": fail, "PATH": "/usr/bin:/bin"})


def test_each_job_is_one_line_when_it_starts_and_one_when_it_ends(tmp_path):
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    jobs = [ln for ln in lines if re.match(TIME, ln)]
    assert [re.sub(TIME + " ", "", ln) for ln in jobs] == [
        "make a started", "make a done (1 of 3 jobs, 33%)",
        "make b started", "make b done (2 of 3 jobs, 66%)",
        "all started", "all done (3 of 3 jobs, 100%)"]
    assert not [ln for ln in lines if re.match(r"(localrule|rule) \w+:|\s+(output|reason|jobid):|Select jobs|Execute \d",
                                               ln)]
    assert "Job stats:" in proc.stderr  # the rest passes unchanged
    log = next((tmp_path / ".snakemake" / "log").glob("*.snakemake.log")).read_text()
    assert "reason: Missing output files" in log  # the full detail stays in the run's log file


def test_shell_commands_with_p_and_a_failed_job_in_full(tmp_path):
    proc = _run(tmp_path, "-p", "--show-failed-logs", fail="b")
    assert proc.returncode != 0
    assert re.search(TIME + r"   \$ echo made a > out/a.txt", proc.stderr)
    assert "Error in rule make:" in proc.stderr and "boom" in proc.stderr  # the error block and its log


def test_a_dry_run_lists_the_jobs_in_full(tmp_path):
    proc = _run(tmp_path, "-n")
    assert proc.returncode == 0
    assert re.search(r"^rule make:$", proc.stdout + proc.stderr, re.M) and "reason:" in proc.stdout + proc.stderr


def test_ctrl_c_is_one_line_per_stopped_job(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group): each job it stops is one line, not an
    error block with the job's traceback and shell command."""
    import os
    import signal
    import time

    (tmp_path / "Snakefile").write_text(SNAKEFILE.replace("echo made", "sleep 60; echo made"))
    log = tmp_path / "console.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT, env={"FAIL": "none", "PATH": "/usr/bin:/bin"},
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while "make a started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    text = log.read_text()
    assert re.search(TIME + r" make a stopped \(interrupted; the next run redoes it\)$", text, re.M), text
    assert "Error in rule" not in text and "CalledProcessError" not in text


def test_a_job_label_is_the_rule_and_its_wildcards_and_names_a_refinement_round():
    from icl_probe.console import job_label

    assert job_label("probe", {"suite": "mini", "model": "pythia-s", "revision": "step1000"}) == \
        "probe mini/pythia-s/step1000"
    assert job_label("refine", {"suite": "mini", "model": "pythia-s", "round": "2"}) == \
        "refine mini/pythia-s/round 2"
    assert job_label("all", None) == "all"
