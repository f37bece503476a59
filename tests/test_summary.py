"""The end-of-run summary: one line per model from its stats.json, null statistics with their
reason, a line for a model without readable statistics, and where the outputs are."""

import json

from icl_probe.cli import main
from icl_probe.summary import format_summary, summarise_results


def _stats(suite, model, *, n=21, half_max=1171.6, label="emergence without valley", lifecycle="stable",
           qc_status="clean", qc=(), null=None, skipped=None, first=1500.0, **more):
    st = {"half_max_step": first, "half_max_step_interp": half_max, "lifecycle": lifecycle,
          "phases": {"label": label}, **more}
    return {"suite": suite, "model": model, "n_checkpoints": n, "qc_status": qc_status, "qc": list(qc),
            "null": null or {}, "skipped": skipped or {}, "statistics": st}


def _write(results, suite, model, stats):
    d = results / suite / model
    d.mkdir(parents=True)
    (d / "stats.json").write_text(stats if isinstance(stats, str) else json.dumps(stats))
    return d


def _results(tmp_path):
    results = tmp_path / "results"
    _write(results, "mini", "pythia-s", _stats("mini", "pythia-s", n=21, half_max=1171.6))
    _write(results, "mini", "pythia-m", _stats(
        "mini", "pythia-m", n=20, half_max=None, lifecycle="direction decays", qc_status="partly measured",
        qc=[{"kind": "partial", "reason": "partly measured: ar_acc"}, {"kind": "note", "reason": "duplicate"}],
        null={"half_max_step_interp": "at or above half max at the first checkpoint: no bracket"}))
    gated = "no emergence (no emergence: no leading plateau)"
    _write(results, "hub", "flat", _stats(
        "hub", "flat", n=5, half_max=None, first=None, label="no emergence", lifecycle=None,
        null={"half_max_step_interp": gated, "lifecycle": gated}))
    (results / "figures").mkdir()
    (results / "settings" / "probes").mkdir(parents=True)
    # a suite's figures folder is not a model, even with a table in it
    (results / "mini" / "figures").mkdir()
    (results / "mini" / "figures" / "table.csv").write_text("model\n")
    return results


def _line(text, name):
    return next(ln for ln in text.splitlines() if ln.strip().startswith(name + " "))


def test_one_row_per_model_with_its_values(tmp_path):
    rows = summarise_results(_results(tmp_path))
    assert [(r["suite"], r["model"]) for r in rows] == [("hub", "flat"), ("mini", "pythia-m"), ("mini", "pythia-s")]
    s = rows[2]
    assert (s["n_checkpoints"], s["emergence_step"], s["emergence_label"], s["lifecycle"]) == (
        21, 1171.6, "emergence without valley", "stable")
    assert (s["qc_status"], s["n_qc_issues"], s["null"]) == ("clean", 0, {})
    m = rows[1]
    assert m["emergence_step"] is None and m["n_qc_issues"] == 2 and m["qc_status"] == "partly measured"


def test_formatted_lines_show_the_values_and_where_outputs_are(tmp_path, monkeypatch):
    _results(tmp_path)
    monkeypatch.chdir(tmp_path)
    results = "results"
    text = format_summary(summarise_results(results), results)
    lines = text.splitlines()
    assert len(lines) <= 15 and all(len(ln) <= 100 for ln in lines)
    assert "3 models" in lines[0]
    assert _line(text, "mini/pythia-s").split() == ["mini/pythia-s", "21", "1172", "stable", "clean"]
    m = _line(text, "mini/pythia-m")
    assert m.split()[1] == "20" and "direction decays" in m and m.endswith("partly measured (2)")
    assert f"{results}/{{suite}}/figures/*.png" in text
    assert f"{results}/{{suite}}/{{model}}/table.csv, stats.json" in text
    assert f"snakemake --report {results}/{{suite}}/report.html" in text


def test_a_null_statistic_is_none_with_its_reason(tmp_path):
    results = _results(tmp_path)
    text = format_summary(summarise_results(results), results)
    m = _line(text, "mini/pythia-m").split()
    assert m[2] == "none"  # no number is made up for it
    flat_text = " ".join(text.split())  # a long reason is wrapped
    assert ("mini/pythia-m: half-max step none: at or above half max at the first checkpoint: no bracket; "
            "half_max_step 1500") in flat_text
    assert _line(text, "hub/flat").split()[2:4] == ["none", "none"]
    # the same reason for two statistics: one line naming both
    assert "hub/flat: half-max step, life cycle none: no emergence (no emergence: no leading plateau)" in text


def test_a_statistic_skipped_or_excluded_gives_that_reason(tmp_path):
    results = tmp_path / "results"
    rec = {"suite": "mini", "model": "bad", "n_checkpoints": 4, "qc_status": "excluded",
           "qc": [{"kind": "excluded", "reason": "infinite ar_acc"}], "statistics": {},
           "skipped": {"all": "excluded by quality control: infinite ar_acc"}}
    _write(results, "mini", "bad", rec)
    text = format_summary(summarise_results(results), results)
    assert _line(text, "mini/bad").split() == ["mini/bad", "4", "none", "none", "excluded", "(1)"]
    assert "mini/bad: half-max step, life cycle none: excluded by quality control: infinite ar_acc" in text


def test_a_broken_or_missing_stats_json_is_one_line_not_a_traceback(tmp_path):
    results = _results(tmp_path)
    _write(results, "mini", "broken", '{"statistics": {"half_')
    _write(results, "mini", "list", "[1, 2]")
    (results / "mini" / "pending").mkdir()
    (results / "mini" / "pending" / "manifest.json").write_text("{}")
    rows = summarise_results(results)
    assert [r["model"] for r in rows if "error" in r] == ["broken", "list", "pending"]
    text = format_summary(rows, results)
    broken = [ln for ln in text.splitlines() if "mini/broken" in ln]
    assert len(broken) == 1 and "unreadable stats.json" in broken[0]
    assert "unreadable stats.json (ValueError: not a JSON object)" in _line(text, "mini/list")
    assert "no stats.json yet" in _line(text, "mini/pending")
    assert "1172" in _line(text, "mini/pythia-s")  # the other models are still summarised


def test_only_the_given_models(tmp_path):
    results = _results(tmp_path)
    rows = summarise_results(results, [("mini", "pythia-s"), ("mini", "gone")])
    assert [r["model"] for r in rows] == ["pythia-s", "gone"]
    assert "no stats.json yet" in rows[1]["error"]


def test_one_suite_names_its_own_figures_and_report_folder(tmp_path):
    results = _results(tmp_path)
    text = format_summary(summarise_results(results, [("mini", "pythia-s")]), results)
    assert f"{results}/mini/figures/*.png" in text
    assert f"snakemake --report {results}/mini/report.html" in text


def test_nothing_aggregated_yet(tmp_path):
    (tmp_path / "results" / "settings").mkdir(parents=True)
    for d in (tmp_path / "results", tmp_path / "absent"):
        text = format_summary(summarise_results(d), d)
        assert len(text.splitlines()) == 1
        assert "nothing has been aggregated" in text and "snakemake" in text


def test_cli_prints_the_summary(tmp_path, capsys):
    results = _results(tmp_path)
    assert main(["summary", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == format_summary(summarise_results(results), results)
    assert "1172" in _line(out, "mini/pythia-s")
    assert main(["summary", str(tmp_path / "empty")]) == 0
    assert "nothing has been aggregated" in capsys.readouterr().out
