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
