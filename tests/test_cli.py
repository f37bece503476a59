"""The icl-probe command: bad input ends in one clear line and exit code 2, never a traceback."""

import json

from icl_probe.cli import main
from icl_probe.stats.synthetic import write_model


def test_result_from_an_older_schema_is_refused_with_the_fix(tmp_path, capsys):
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2, 4, 8))
    old = model_dir / "step4" / "gd_readout.json"
    res = json.loads(old.read_text())
    res["schema_version"] = 0
    old.write_text(json.dumps(res))
    code = main(["aggregate", "--model-dir", str(model_dir), "--manifest", str(model_dir / "manifest.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "schema version 0" in err and "--forcerun" in err and str(old) in err
    assert "Traceback" not in err


def test_damaged_result_file_is_named_with_the_fix(tmp_path, capsys):
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2, 4, 8))
    bad = model_dir / "step2" / "induction.json"
    bad.write_text(bad.read_text()[:100])
    code = main(["aggregate", "--model-dir", str(model_dir), "--manifest", str(model_dir / "manifest.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"unreadable result file {bad}" in err and f"--forcerun {bad}" in err and "Traceback" not in err
    assert not (model_dir / "table.csv").exists()  # no table built from a partial set of results


def test_probe_of_a_revision_not_in_the_manifest_names_the_ones_it_has(tmp_path, capsys):
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2))
    code = main(["probe", "--manifest", str(model_dir / "manifest.json"), "--revision", "step9",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "step9" in err and "step0, step1, step2" in err


def test_aggregate_without_inputs_says_what_it_needs(capsys):
    assert main(["aggregate"]) == 2
    assert "--table FILE.csv --out DIR" in capsys.readouterr().err


def test_settings_files_are_read_as_the_json_options_are(tmp_path):
    """--stats-settings-file FILE (what the workflow passes) gives the table that
    --stats-settings JSON gives; both take precedence over the defaults."""
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2, 4, 8))
    stats = {"bootstrap": 10, "seed": 3}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    manifest = str(model_dir / "manifest.json")
    assert main(["aggregate", "--model-dir", str(model_dir), "--manifest", manifest,
                 "--stats-settings-file", str(tmp_path / "stats.json")]) == 0
    from_file = (model_dir / "stats.json").read_text()
    assert main(["aggregate", "--model-dir", str(model_dir), "--manifest", manifest,
                 "--stats-settings", json.dumps(stats)]) == 0
    assert (model_dir / "stats.json").read_text() == from_file

    from icl_probe.cli import _settings, build_parser

    settings = {"probes": {"enabled": ["induction"]}, "runtime": {"device": "cpu", "dtype": "float32"}}
    (tmp_path / "probes.json").write_text(json.dumps(settings))
    args = build_parser().parse_args(["probe", "--revision", "step0", "--out", str(tmp_path / "o"),
                                      "--settings-file", str(tmp_path / "probes.json")])
    assert _settings(args) == settings


def test_probe_threads_reach_torch_and_a_bad_count_is_refused(tmp_path, capsys):
    import torch

    from icl_probe.cli import _use_threads

    before = torch.get_num_threads()
    try:
        _use_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2))
    code = main(["probe", "--manifest", str(model_dir / "manifest.json"), "--revision", "step0",
                 "--out", str(tmp_path / "out"), "--threads", "0"])
    assert code == 2 and "--threads must be at least 1" in capsys.readouterr().err


def test_aggregate_results_are_exactly_the_files_given(tmp_path):
    """--results FILE ... (what the workflow passes): a disabled probe's old result lying in the
    revision folders is not in the table; without --results the stats settings' probes decide."""
    from icl_probe import SCHEMA_VERSION
    from icl_probe.stats.table import read_table

    model_dir = tmp_path / "mini" / "m"
    steps = (0, 1, 2, 4, 8)
    write_model(model_dir, "mini", "m", steps=steps)
    for s in steps:
        (model_dir / f"step{s}" / "old.json").write_text(json.dumps(
            {"schema_version": SCHEMA_VERSION, "probe": "old", "scalars": {"stale": 1.0}}))
    manifest = str(model_dir / "manifest.json")
    given = [str(model_dir / f"step{s}" / f"{p}.json") for s in steps for p in ("gd_readout", "induction")]
    assert main(["aggregate", "--model-dir", str(model_dir), "--manifest", manifest, "--results", *given,
                 "--stats-settings", json.dumps({"bootstrap": 10, "probes": ["gd_readout", "induction"]})]) == 0
    table = read_table(model_dir / "table.csv")
    assert "stale" not in table and "ar_acc" not in table and "error_reduction" in table
    assert json.loads((model_dir / "qc.json").read_text())["status"] == "clean"
    first = (model_dir / "table.csv").read_bytes()
    assert main(["aggregate", "--model-dir", str(model_dir), "--manifest", manifest,
                 "--stats-settings", json.dumps({"bootstrap": 10, "probes": ["gd_readout", "induction"]})]) == 0
    assert (model_dir / "table.csv").read_bytes() == first


def _probe_settings_file(path, probe, section, seeds=(42, 7)):
    """A per-probe settings file as the workflow's settings rule writes it."""
    path.write_text(json.dumps({
        "probes": {"seeds": list(seeds), "batch_size": 5, "bootstrap": 20, "external": [], "enabled": [probe],
                   probe: section},
        "runtime": {"device": "cpu", "dtype": "float32"}}))
    return str(path)


SECTIONS = {"induction": {"block_len": 8, "n_sequences": 6},
            "associative_recall": {"n_items": 32, "n_pairs": 5, "n_prompts": 6}}


def test_several_settings_files_are_merged_and_must_agree(tmp_path, capsys):
    from icl_probe.cli import _settings, build_parser

    a = _probe_settings_file(tmp_path / "a.json", "induction", SECTIONS["induction"])
    b = _probe_settings_file(tmp_path / "b.json", "associative_recall", SECTIONS["associative_recall"])
    args = build_parser().parse_args(["probe", "--revision", "step0", "--out", str(tmp_path / "o"),
                                      "--settings-file", b, a])
    merged = _settings(args)
    assert merged["probes"]["enabled"] == ["associative_recall", "induction"]  # the given order
    assert merged["probes"]["induction"] == SECTIONS["induction"]
    assert merged["probes"]["associative_recall"] == SECTIONS["associative_recall"]
    assert merged["probes"]["seeds"] == [42, 7] and merged["runtime"]["device"] == "cpu"

    c = _probe_settings_file(tmp_path / "c.json", "associative_recall", SECTIONS["associative_recall"], seeds=(1,))
    model_dir = tmp_path / "mini" / "m"
    write_model(model_dir, "mini", "m", steps=(0, 1, 2))
    code = main(["probe", "--manifest", str(model_dir / "manifest.json"), "--revision", "step0",
                 "--out", str(tmp_path / "out"), "--settings-file", a, c])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "probes.seeds" in err and "a.json" in err and "c.json" in err


def test_keep_current_twice_rewrites_nothing_and_loads_nothing(saved_model, tmp_path, count_loads):
    """icl-probe probe --keep-current run again with the same settings and prompts: every result is
    current, so no file is rewritten (bytes and mtimes unchanged) and the model is not loaded."""
    from icl_probe.runner import make_prompts

    a = _probe_settings_file(tmp_path / "induction.json", "induction", SECTIONS["induction"])
    b = _probe_settings_file(tmp_path / "associative_recall.json", "associative_recall",
                             SECTIONS["associative_recall"])
    settings = {"seeds": [42, 7], "enabled": list(SECTIONS), **SECTIONS}
    prompts = make_prompts(str(saved_model), None, tmp_path / "prompts", settings)
    loads = count_loads
    out = tmp_path / "out"
    argv = ["probe", "--model", str(saved_model), "--revision", "step128", "--out", str(out),
            "--prompts", *map(str, prompts.values()), "--settings-file", a, b, "--keep-current"]
    assert main(argv) == 0
    assert len(loads) == 1
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == ["associative_recall.json", "induction.json"]
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    assert main(argv) == 0
    assert len(loads) == 1  # nothing had to run: no model load
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before
    assert sorted(out.glob("*.json")) == files
    # one folder of prompt files works the same
    assert main(argv[:argv.index("--prompts") + 1] + [str(tmp_path / "prompts")] + argv[argv.index(a) - 1:]) == 0
    assert len(loads) == 1 and {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before


# --- the network, interruptions, log lines ----------------------------------------------------------

def _icl_probe(*args, **kw):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "icl_probe.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_an_unreachable_hub_is_two_lines_naming_the_endpoint_and_the_fix(tmp_path, monkeypatch):
    """No network (here: an endpoint that refuses connections) ends in two lines, not a traceback."""
    import re
    from pathlib import Path

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    record = {"suite": "s", "model": "m", "repo_id": "EleutherAI/pythia-70m", "source": "hub", "revisions": "log:3"}
    proc = _icl_probe("resolve", "--record", json.dumps(record), "--out", str(tmp_path / "manifest.json"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if " WARNING " not in ln]
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("icl-probe resolve: error: cannot reach the Hub at http://127.0.0.1:9 (ConnectError")
    assert "HF_ENDPOINT" in lines[1] and "Troubleshooting" in lines[1]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert re.search(r"^\| `cannot reach the Hub at .*\| .* \| .*HF_HUB_OFFLINE", readme, re.M)  # its row


def test_hub_retry_warnings_appear_once_per_attempt():
    """huggingface_hub's backoff warnings reach the log once (not also through its own handler),
    and its "Retrying in" line, which repeats the one before, is dropped."""
    code = ("import sys; sys.argv = ['icl-probe']\n"
            "from icl_probe.cli import _setup_logging; _setup_logging()\n"
            "from huggingface_hub.utils import logging as hl\n"
            "log = hl.get_logger('huggingface_hub.utils._http')\n"
            "log.warning(\"'refused' thrown while requesting HEAD http://x/config.json\")\n"
            "log.warning('Retrying in 1s [Retry 1/5].')\n")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("thrown while requesting") == 1 and "Retrying in" not in proc.stderr


def test_sigterm_stops_a_minisuite_build_with_one_line_and_no_temporary_folder(tmp_path):
    """SIGTERM (Snakemake or Slurm stopping a job) during a build: a short message, exit code 143,
    and the build's temporary folder is gone; a dead build's leftover is removed by the next one."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "hub"
    cache.mkdir()
    stale = cache / ".models--mini--olmo2-s.building-x7k2"  # an older build's, killed by SIGKILL
    stale.mkdir()
    log = tmp_path / "build.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "icl_probe.cli", "build-minisuite", "--model", "olmo2-s",
                                 "--cache-dir", str(cache)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "step     0/" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert not stale.exists()  # removed when this build started
        assert list(cache.glob(".models--mini--olmo2-s.building-*"))  # this build's own
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    text = log.read_text()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith("icl-probe build-minisuite: terminated; results already written")
    assert not list(cache.glob(".*building-*")) and not (cache / "models--mini--olmo2-s").exists()
    assert "ETA" in text and "steps/s" in text  # its progress line


def test_a_live_build_and_another_hosts_build_are_not_removed(tmp_path):
    import os
    import socket

    from icl_probe.minisuite.build import remove_stale_builds

    prefix = ".models--mini--x.building-"
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    names = {"live": f"{socket.gethostname()}-{os.getpid()}-a1", "dead": f"{socket.gethostname()}-{dead}-b2",
             "other_host": f"node17-{dead}-c3", "old_format": "q9z8"}
    for n in names.values():
        (tmp_path / (prefix + n)).mkdir()
    removed = remove_stale_builds(tmp_path, "models--mini--x", log=lambda *a: None)
    assert sorted(p.name[len(prefix):] for p in removed) == sorted([names["dead"], names["old_format"]])
    assert sorted(p.name[len(prefix):] for p in tmp_path.iterdir()) == sorted([names["live"], names["other_host"]])


def test_the_command_exits_quickly_yet_runs_the_exit_callbacks_and_keeps_its_output():
    """`icl-probe` ends with os._exit after main: what it printed (to pipes, buffered) arrives,
    atexit callbacks still run, and the exit status is main's (2 for a user error)."""
    import subprocess
    import sys

    code = ("import atexit, sys; from icl_probe.cli import entry; "
            "atexit.register(lambda: print('exit callback ran', flush=True)); "
            "sys.argv = ['icl-probe', 'aggregate']; entry()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--table FILE.csv --out DIR" in proc.stderr
    assert "exit callback ran" in proc.stdout
