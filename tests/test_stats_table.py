"""Per-checkpoint result files -> the per-model table and the layers table."""

import pandas as pd
import pytest

from icl_probe.stats.synthetic import default_curves, write_model
from icl_probe.stats.table import ID_COLUMNS, LAYER_COLUMNS, collect_checkpoint_results, read_table, write_tables

STEPS = [0, 1, 2, 4, 8, 1000]


@pytest.fixture
def model(tmp_path):
    d = tmp_path / "mini" / "pythia-s"
    return d, write_model(d, "mini", "pythia-s", STEPS, default_curves(STEPS), std=0.05, n_layers=3,
                          tokens_per_step=2048)


def test_table_columns_order_and_values(model):
    d, manifest = model
    t, layers = collect_checkpoint_results(d, manifest)
    assert list(t.columns[:len(ID_COLUMNS)]) == list(ID_COLUMNS)
    assert list(t["step"]) == STEPS
    assert list(t["revision"]) == [f"step{s}" for s in STEPS]
    assert t.loc[5, "tokens"] == 1000 * 2048 and t.loc[5, "tokens_B"] == pytest.approx(2.048e-3)
    er = default_curves(STEPS)["error_reduction"]
    assert t["error_reduction"].tolist() == pytest.approx(er.tolist())
    assert t["error_reduction_std"].tolist() == pytest.approx([0.05] * 6)
    assert t["error_reduction_ci_lo"].tolist() == pytest.approx((er - 0.1).tolist())
    cols = list(t.columns)
    # spec order: gd_readout metrics before induction, each followed by _std, _ci_lo, _ci_hi
    i = cols.index("mean_err_embed")
    assert cols[i:i + 4] == ["mean_err_embed", "mean_err_embed_std", "mean_err_embed_ci_lo", "mean_err_embed_ci_hi"]
    assert cols.index("error_reduction") < cols.index("total_contraction") < cols.index("ar_acc")
    assert t["commit"].str.len().eq(40).all()
    # null metrics (an undefined geometric fit) become NaN
    assert t["rho2_per_layer"].isna().sum() == (~(default_curves(STEPS)["rho2_per_layer"] > 0)).sum()
    assert list(layers.columns) == list(LAYER_COLUMNS)
    me = layers[(layers.metric == "mean_err") & (layers.revision == "step1000")]
    assert me["layer"].tolist() == [0, 1, 2, 3]
    assert me["value"].iloc[0] == pytest.approx(t.loc[5, "mean_err_embed"])


def test_rows_ordered_by_step_whatever_the_manifest_order(model, tmp_path):
    d, manifest = model
    import json
    m = json.loads(manifest.read_text())
    m["revisions"] = m["revisions"][::-1]
    t, _ = collect_checkpoint_results(d, m)
    assert list(t["step"]) == STEPS


def test_duplicate_revisions_are_not_read(model):
    d, manifest = model
    import json
    m = json.loads(manifest.read_text())
    m["revisions"][2]["duplicate_of"] = "step1"
    t, _ = collect_checkpoint_results(d, m)
    assert "step2" not in set(t["revision"])


def test_write_tables_round_trip(model, tmp_path):
    d, manifest = model
    t, layers = collect_checkpoint_results(d, manifest)
    paths = write_tables(t, layers, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["layers.csv", "table.csv", "table.parquet"]
    back = read_table(paths["table"])
    pd.testing.assert_frame_equal(back, t, check_dtype=False)
    pq = pd.read_parquet(paths["parquet"])
    assert list(pq.columns) == list(t.columns)
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left
