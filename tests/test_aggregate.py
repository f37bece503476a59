"""The aggregation edge: per model, across models, and from a ready-made table."""

import json

import numpy as np
import pandas as pd
import pytest

from icl_probe.aggregate import aggregate_model, aggregate_suite, aggregate_table, main
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
                                        "excluded": False, "issues": []}


def test_aggregate_suite_qc_table_forecast_and_figures(suite, tmp_path):
    out = aggregate_suite(suite, tmp_path / "figures", CFG)
    qc = pd.read_csv(out["qc"])
    assert qc.to_dict("records") == [{"suite": "mini", "model": "pythia-bad",
                                      "reason": "missing checkpoints", "revisions": "step4000"}]
    fc = read_json(out["forecast"])
    assert fc["models"] == ["pythia-a", "pythia-b", "pythia-c", "pythia-d"]
    assert fc["excluded"] == ["pythia-bad"]
    er = next(p for p in fc["pairs"] if p["feature"] == p["target"] == "error_reduction")
    assert er["n_models"] == 4 and er["spearman"] == pytest.approx(1.0)
    summary = pd.read_csv(out["summary"])
    assert summary.set_index("model").loc["pythia-bad", "excluded"]
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
        _close(want["bootstrap"], got[want["model"]]["bootstrap"], want["model"])


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
    assert st["statistics"]["zero_crossing"]["bracket"] == [100.0, 1000.0]
    assert st["statistics"]["heldout_change"]["ar_acc"]["change"] == pytest.approx(0.0)
    assert "sign_agreement" in st["skipped"]["sa_decay"]
    assert "late_early_ratio" in st["skipped"]["sinks"]
    fc = read_json(out["forecast"])
    pair = next(p for p in fc["pairs"] if p["target"] == "ar_acc")
    assert pair["n_models"] == 4 and pair["spearman"] == pytest.approx(1.0)
    sa = next(p for p in fc["pairs"] if p["feature"] == "sign_agreement")
    assert sa["n_models"] == 0 and "needs" in sa["note"]
    assert pd.read_csv(out["qc"]).empty


def test_aggregate_table_flags_constant_and_nan_models(tmp_path):
    rows = [{"model": "flat", "step": s, "error_reduction": 0.4} for s in (0, 10, 100, 1000)]
    rows += [{"model": "broken", "step": s, "error_reduction": v} for s, v in zip((0, 10, 100), (0.0, np.nan, 1.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    qc = pd.read_csv(out["qc"]).set_index("model")["reason"].to_dict()
    assert qc == {"flat": "identical metrics at 4 checkpoints", "broken": "non-finite error_reduction"}
    models = read_json(out["stats"])["models"]
    assert models["flat"]["excluded"] and models["flat"]["statistics"] == {}


def test_aggregate_table_needs_model_and_step(tmp_path):
    pd.DataFrame({"step": [0, 1], "error_reduction": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="needs the column"):
        aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)


def test_main_entry_point(tmp_path):
    pd.DataFrame({"model": ["a"] * 3, "step": [0, 1, 2], "error_reduction": [0.0, 0.5, 1.0]}).to_csv(
        tmp_path / "t.csv", index=False)
    assert main(["--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                 "--stats-settings", json.dumps({"bootstrap": 10})]) == 0
    assert read_json(tmp_path / "o" / "stats.json")["models"]["a"]["statistics"]["peak_er"] == 1.0
