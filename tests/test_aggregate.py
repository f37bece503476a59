"""The aggregation edge: per model, across models, and from a ready-made table."""

import json

import numpy as np
import pandas as pd
import pytest

from icl_probe.aggregate import (TableFormatError, aggregate_model, aggregate_suite, aggregate_table, main,
                                 read_metric_table)
from icl_probe.io import read_json
from icl_probe.plotting import FIGURES
from icl_probe.stats.synthetic import PYTHIA_STEPS, default_curves, write_model

CFG = {"bootstrap": 100, "tau_min": 0.1}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Four clean constructed models (ER scaled 1.0 .. 2.5) and one with a missing checkpoint."""
    root = tmp_path_factory.mktemp("results") / "mini"
    dirs = []
    for k, name in enumerate(["pythia-a", "pythia-b", "pythia-c", "pythia-d"]):
        d = root / name
        write_model(d, "mini", name, curves=default_curves(PYTHIA_STEPS, scale=1 + 0.5 * k))
        dirs.append(d)
    bad = root / "pythia-bad"
    write_model(bad, "mini", "pythia-bad", skip=("step4000",))
    dirs.append(bad)
    for d in dirs:
        aggregate_model(d, d / "manifest.json", CFG)
    return dirs


def test_aggregate_model_writes_every_output(suite):
    d = suite[0]
    for name in ("table.csv", "table.parquet", "layers.csv", "stats.json", "qc.json"):
        assert (d / name).exists(), name
    st = read_json(d / "stats.json")
    assert not st["excluded"] and st["statistics"]["phases"]["label"] == "three-phase"
    assert read_json(d / "qc.json") == {"schema_version": 1, "suite": "mini", "model": "pythia-a",
                                        "excluded": False, "status": "clean", "issues": []}
    assert st["qc_status"] == "clean"


def test_aggregate_suite_qc_table_forecast_and_figures(suite, tmp_path):
    out = aggregate_suite(suite, tmp_path / "figures", CFG)
    qc = pd.read_csv(out["qc"], keep_default_na=False)
    clean = [{"suite": "mini", "model": f"pythia-{x}", "status": "clean", "kind": "", "reason": "", "revisions": ""}
             for x in "abcd"]
    assert qc.to_dict("records") == clean + [{"suite": "mini", "model": "pythia-bad", "status": "excluded",
                                              "kind": "excluded", "reason": "missing checkpoints",
                                              "revisions": "step4000"}]
    fc = read_json(out["forecast"])
    assert fc["models"] == ["pythia-a", "pythia-b", "pythia-c", "pythia-d"]
    assert fc["excluded"] == ["pythia-bad"]
    er = next(p for p in fc["pairs"] if p["feature"] == p["target"] == "error_reduction")
    assert er["n_models"] == 4 and er["spearman"] == pytest.approx(1.0)
    summary = pd.read_csv(out["summary"])
    assert summary.set_index("model").loc["pythia-bad", "excluded"]
    page = out["tables"].read_text()  # the same two tables for the report, one row per model / issue
    assert page.count("<tr>") == 1 + len(summary) + 1 + len(qc)
    assert "<td>pythia-bad</td><td>excluded</td><td>excluded</td><td>missing checkpoints</td>" in page
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{name}.{ext}").stat().st_size > 1000
        assert out["figures"][name]["caption"]


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and b is not None:
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_aggregate_table_on_exported_tables_gives_the_same_statistics(suite, tmp_path):
    clean = suite[:4]
    export = pd.concat([pd.read_csv(d / "table.csv") for d in clean])
    export.to_csv(tmp_path / "all.csv", index=False)
    out = aggregate_table(tmp_path / "all.csv", tmp_path / "agg", CFG, figures=False)
    got = read_json(out["stats"])["models"]
    for d in clean:
        want = read_json(d / "stats.json")
        _close(want["statistics"], got[want["model"]]["statistics"], want["model"])
        _close(want["intervals"], got[want["model"]]["intervals"], want["model"])


def test_aggregate_table_with_heldout_names_and_missing_columns(tmp_path):
    rows = []
    steps = [0, 10, 100, 1000, 4000, 10000]
    for k in range(4):
        er = (1 + k) * np.array([0.0, -0.5, -1.0, 0.5, 1.5, 2.0])
        for s, e in zip(steps, er):
            rows.append({"model": f"m{k}", "step": s, "tokens_B": s * 2e-3, "error_reduction": e,
                         "error_reduction_std": 0.05, "heldout_ar_acc": 0.1 + e / 10})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    st = read_json(out["stats"])["models"]["m1"]
    assert [st["statistics"]["zero_crossing_lo"], st["statistics"]["zero_crossing_hi"]] == [100.0, 1000.0]
    assert st["statistics"]["heldout_change"]["ar_acc"]["change"] == pytest.approx(0.0)
    assert "sign_agreement" in st["skipped"]["sa_decay"]
    assert "late_early_ratio" in st["skipped"]["sinks"]
    fc = read_json(out["forecast"])
    pair = next(p for p in fc["pairs"] if p["target"] == "ar_acc")
    assert pair["n_models"] == 4 and pair["spearman"] == pytest.approx(1.0)
    sa = next(p for p in fc["pairs"] if p["feature"] == "sign_agreement")
    assert sa["n_models"] == 0 and "needs" in sa["note"]
    qc = pd.read_csv(out["qc"], keep_default_na=False)
    assert set(qc["status"]) == {"clean"} and "excluded" not in set(qc["kind"])


def test_aggregate_table_flags_repeated_vectors_inf_and_missing_values(tmp_path):
    rng = np.random.default_rng(0)
    vec = {m: float(rng.normal()) for m in ("error_reduction", "sign_agreement", "slope_alpha", "rho_obs")}
    rows = [{"model": "repeated", "step": s, **vec} for s in (0, 10, 100, 1000)]
    rows += [{"model": "broken", "step": s, "error_reduction": v} for s, v in zip((0, 10, 100), (0.0, np.inf, 1.0))]
    rows += [{"model": "gappy", "step": s, "error_reduction": v}
             for s, v in zip((0, 10, 100, 1000), (0.0, np.nan, 0.5, 1.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    qc = pd.read_csv(out["qc"], keep_default_na=False)
    got = {(r.model, r.status, r.kind, r.reason) for r in qc.itertuples()}
    assert ("repeated", "excluded", "excluded", "identical metrics at 4 checkpoints") in got
    assert ("broken", "excluded", "excluded", "infinite error_reduction") in got
    assert ("gappy", "partly measured", "partial", "partly measured: error_reduction") in got
    assert not {r for r in got if r[0] == "gappy" and r[2] == "excluded"}
    models = read_json(out["stats"])["models"]
    assert models["repeated"]["excluded"] and models["repeated"]["statistics"] == {}
    assert models["broken"]["excluded"] and models["broken"]["qc_status"] == "excluded"
    assert not models["gappy"]["excluded"] and models["gappy"]["qc_status"] == "partly measured"
    assert models["gappy"]["statistics"]["peak_er"] == 1.0
    assert read_json(out["forecast"])["excluded"] == ["broken", "repeated"]


def test_aggregate_table_needs_model_and_step(tmp_path):
    pd.DataFrame({"step": [0, 1], "error_reduction": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(TableFormatError, match="needs the column") as err:
        aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    assert err.value.user_facing and "model" in str(err.value) and "step" not in str(err.value).split(";")[0]
    pd.DataFrame({"model": ["a", "a"], "error_reduction": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(TableFormatError, match="needs the column.*step"):
        read_metric_table(tmp_path / "t.csv")


def _write(tmp_path, text):
    (tmp_path / "t.csv").write_text(text)
    return tmp_path / "t.csv"


@pytest.mark.parametrize("cell", ["n/a", '"1,234"'])
def test_read_metric_table_names_column_row_and_value_of_a_non_numeric_cell(tmp_path, cell):
    path = _write(tmp_path, f"model,step,error_reduction\na,0,0.1\na,10,0.2\na,20,{cell}\n")
    with pytest.raises(TableFormatError) as err:
        read_metric_table(path)
    msg = str(err.value)
    assert "'error_reduction'" in msg and "row 3" in msg and repr(cell.strip('"')) in msg
    path = _write(tmp_path, f"model,step,error_reduction\na,0,0.1\na,{cell},0.2\n")
    with pytest.raises(TableFormatError, match=r"'step'.*row 2"):
        read_metric_table(path)


def test_read_metric_table_missing_cells_negative_steps_extra_columns_and_tokens(tmp_path):
    df = read_metric_table(_write(tmp_path, "model,step,error_reduction,ar_acc\na,0,,NaN\na,10,0.5,\n"))
    assert df["error_reduction"].isna().tolist() == [True, False] and df["ar_acc"].isna().all()
    with pytest.raises(TableFormatError, match=r"'step' is negative at row 2"):
        read_metric_table(_write(tmp_path, "model,step,error_reduction\na,0,0.1\na,-10,0.2\n"))
    notes = []
    df = read_metric_table(_write(tmp_path, "model,step,error_reduction,loss,notes\na,0,0.1,3.2,x\n"), notes)
    assert "loss" not in df and "notes" not in df
    assert len(notes) == 1 and "loss" in notes[0] and "notes" in notes[0] and "ignored" in notes[0]
    notes = []
    df = read_metric_table(_write(tmp_path, "model,tokens_B,error_reduction\na,0,0.1\na,2.5,0.4\n"), notes)
    assert df["step"].tolist() == [0.0, 2.5e9] and df["tokens"].tolist() == [0.0, 2.5e9]
    assert any("no step column" in n and "tokens_B" in n for n in notes)


def test_aggregate_table_notes_in_stats_json_and_tokens_only_table(tmp_path):
    rows = [{"model": "a", "tokens": t, "error_reduction": e, "loss": 1.0}
            for t, e in zip((0, 1e8, 1e9, 1e10), (0.0, -0.4, 0.6, 1.5))]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    st = read_json(out["stats"])
    assert any("loss" in n for n in st["notes"]) and any("no step column" in n for n in st["notes"])
    assert st["models"]["a"]["statistics"]["peak_er"] == 1.5
    assert st["models"]["a"]["statistics"]["peak_step"] == 1e10


def test_olmo2_stages_and_ingredients_are_separate_trajectories(tmp_path):
    rows = []
    for stage, ing, base in (("stage1", "", 0.0), ("stage2", "ingredient1", 1.0), ("stage2", "ingredient2", 2.0)):
        for s, e in zip((0, 1000, 2000), (0.1, 0.2, 0.3)):
            rows.append({"model": "OLMo-2-1B", "stage": stage, "ingredient": ing, "step": s,
                         "error_reduction": base + e})
    rows += [{"model": "OLMo-2-7B", "stage": "stage1", "ingredient": "", "step": s, "error_reduction": 0.1 * s}
             for s in (0, 10, 20)]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    notes = []
    df = read_metric_table(tmp_path / "t.csv", notes)
    assert sorted(set(df["model"])) == ["OLMo-2-1B/stage1", "OLMo-2-1B/stage2-ingredient1",
                                        "OLMo-2-1B/stage2-ingredient2", "OLMo-2-7B"]
    assert "stage" not in df and "ingredient" not in df and any("separate trajectories" in n for n in notes)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    models = read_json(out["stats"])["models"]
    assert models["OLMo-2-1B/stage2-ingredient2"]["statistics"]["peak_er"] == pytest.approx(2.3)
    qc = pd.read_csv(out["qc"], keep_default_na=False)
    assert not any(qc["reason"].str.startswith("duplicate step"))  # never merged


def test_duplicate_steps_in_a_table_are_a_note(tmp_path):
    rows = [{"model": "a", "step": s, "revision": r, "error_reduction": e}
            for s, r, e in ((0, "step0", 0.0), (10, "step10", 0.5), (10, "step10-rerun", 0.6), (20, "step20", 1.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    qc = pd.read_csv(out["qc"], keep_default_na=False)
    row = qc[qc["reason"] == "duplicate step 10"].iloc[0]
    assert row["kind"] == "note" and row["revisions"] == "step10;step10-rerun" and row["status"] == "clean"
    pd.DataFrame(rows).iloc[[0, 2, 1, 3]].to_csv(tmp_path / "t2.csv", index=False)
    out2 = aggregate_table(tmp_path / "t2.csv", tmp_path / "o2", CFG, figures=False)
    assert pd.read_csv(out2["qc"], keep_default_na=False).equals(qc)


def test_main_entry_point(tmp_path):
    pd.DataFrame({"model": ["a"] * 3, "step": [0, 1, 2], "error_reduction": [0.0, 0.5, 1.0]}).to_csv(
        tmp_path / "t.csv", index=False)
    assert main(["--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                 "--stats-settings", json.dumps({"bootstrap": 10})]) == 0
    assert read_json(tmp_path / "o" / "stats.json")["models"]["a"]["statistics"]["peak_er"] == 1.0


def test_published_table_with_sparse_heldout_columns_keeps_every_statistic(tmp_path):
    """The table of the issue: ER and SA at every checkpoint, held-out accuracy at 2 of 12."""
    steps = [0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    er = [0.0, 0.0, -0.05, -0.2, -0.4, -0.3, 0.1, 0.9, 1.6, 1.4, 1.2, 1.0]
    sa = [0.5, 0.5, 0.5, 0.52, 0.55, 0.6, 0.7, 0.8, 0.86, 0.86, 0.86, 0.86]
    ind = [""] * 12
    ind[7], ind[11] = "0.41", "0.83"  # measured at step 1000 and at the final step only
    rows = pd.DataFrame({"model": "pub", "step": steps, "error_reduction": er, "error_reduction_std": 0.03,
                         "sign_agreement": sa, "sign_agreement_std": 0.01, "heldout_induction_acc": ind})
    rows.to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    st = read_json(out["stats"])["models"]["pub"]
    s = st["statistics"]
    assert not st["excluded"] and st["qc_status"] == "partly measured"
    assert s["phases"]["label"] == "three-phase"
    assert (s["zero_crossing_lo"], s["zero_crossing_hi"]) == (200.0, 500.0)
    assert s["half_max_step"] == 1000.0 and s["peak_step"] == 2000.0
    assert s["lifecycle"] == "magnitude attenuates, direction preserved"
    hc = s["heldout_change"]["induction_acc"]
    # the peak is at 2000: measured 1000 is 0.30 decades away, the final 20000 one decade
    assert (hc["at_peak_step"], hc["final_step"]) == (1000.0, 20000.0)
    assert hc["change"] == pytest.approx(0.83 - 0.41)
    assert st["checkpoints"]["induction_acc"]["n"] == 2
    summary = pd.read_csv(out["summary"]).set_index("model")
    for col in ("peak_er_ci_lo", "peak_er_ci_hi", "zero_crossing_interp_ci_lo", "half_max_step_interp_ci_hi",
                "er_decay_ci_lo", "sa_decay_ci_hi", "zero_crossing_lo_tokens"):
        assert col in summary.columns
    assert summary.loc["pub", "peak_er_ci_lo"] < 1.6 < summary.loc["pub", "peak_er_ci_hi"]


def test_aggregate_reads_the_enabled_probes_not_every_file_in_the_folder(tmp_path):
    """A disabled probe's old result in the revision folders, and the prompt files, do not reach the
    table: aggregate reads the result files given (the workflow's inputs) or those of the stats
    settings' probes, and its QC expects exactly those."""
    from icl_probe import SCHEMA_VERSION
    from icl_probe.stats.table import read_table

    d = tmp_path / "mini" / "m"
    manifest = write_model(d, "mini", "m")
    revisions = [e["revision"] for e in read_json(manifest)["revisions"]]
    for rev in revisions:
        old = json.dumps({"schema_version": SCHEMA_VERSION, "probe": "associative_recall_old",
                                      "revision": rev, "scalars": {"stale": 1.0}})
        (d / rev / "associative_recall_old.json").write_text(old)
    (d / "prompts").mkdir()
    (d / "prompts" / "induction.json").write_text(json.dumps({"probe": "induction", "sets": []}))
    enabled = ["gd_readout", "induction"]
    cfg = {**CFG, "probes": enabled}
    paths = aggregate_model(d, manifest, cfg)
    listed = read_table(paths["table"])
    assert "stale" not in listed and "ar_acc" not in listed and "sink_rate_eps" not in listed
    assert {"error_reduction", "total_contraction"} <= set(listed.columns)
    assert read_json(paths["qc"])["status"] == "clean"
    listed_bytes = paths["table"].read_bytes()

    given = [d / rev / f"{p}.json" for rev in revisions for p in enabled] + [d / "prompts" / "induction.json"]
    paths = aggregate_model(d, manifest, cfg, results=given)
    assert paths["table"].read_bytes() == listed_bytes
    assert read_json(paths["qc"])["status"] == "clean"

    # a revision whose given results lack an enabled probe is a missing checkpoint
    paths = aggregate_model(d, manifest, cfg, results=[p for p in given if p != d / revisions[3] / "induction.json"])
    assert read_json(paths["qc"])["issues"][0]["revisions"] == [revisions[3]]


def test_the_sink_threshold_of_a_models_results_reaches_its_figures(tmp_path):
    """sink_eps: the eps recorded in the settings of the model's attention_sinks.json (not in
    prompts/), None when no result records one."""
    import json

    from icl_probe.aggregate import _load_model_dir

    d = tmp_path / "mini" / "m"
    write_model(d, "mini", "m", steps=(0, 1, 2, 4, 8))
    aggregate_model(d, d / "manifest.json", CFG)
    assert _load_model_dir(d).sink_eps is None
    for path in d.glob("step*/attention_sinks.json"):
        res = json.loads(path.read_text())
        res["settings"] = {**res.get("settings", {}), "eps": 0.15}
        path.write_text(json.dumps(res))
    (d / "prompts").mkdir()
    (d / "prompts" / "attention_sinks.json").write_text(json.dumps({"settings": {"eps": 0.9}}))
    assert _load_model_dir(d).sink_eps == 0.15
