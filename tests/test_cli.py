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
