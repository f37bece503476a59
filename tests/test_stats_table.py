"""Per-checkpoint result files -> the per-model table and the layers table."""

import json

import pandas as pd
import pytest

from icl_probe.stats.synthetic import default_curves, write_model
from icl_probe.stats.table import (ID_COLUMNS, LAYER_COLUMNS, SCALARS, collect_checkpoint_results, read_table,
                                   write_tables)

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


def _result(probe, scalars, rev="step0", step=0):
    from icl_probe import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "probe": probe, "suite": "mini", "model": "pythia-s",
            "revision": rev, "step": step, "scalars": scalars, "per_layer": {}}


def _lay_around(d, steps=STEPS):
    """What lies in a finished sweep's folders besides the enabled probes' results: a disabled
    probe's old result in every revision folder, and the model's prompt files."""
    for s in steps:
        (d / f"step{s}" / "old_probe.json").write_text(json.dumps(
            _result("old_probe", {"stale": 1.0, "stale_std": 0.0, "stale_ci": [1.0, 1.0]}, f"step{s}", s)))
    (d / "prompts").mkdir()
    (d / "prompts" / "gd_readout.json").write_text(json.dumps({"probe": "gd_readout", "sets": []}))
    (d / "prompts.json").write_text(json.dumps(_result("prompts", {"p": 1.0})))


def test_a_disabled_probes_old_result_is_not_read(model):
    """The table holds the probes named (by result files, or the stats settings' probes list), never
    whatever JSON lies in a revision folder; prompt files are never results."""
    d, manifest = model
    before, _ = collect_checkpoint_results(d, manifest)
    _lay_around(d)
    default, _ = collect_checkpoint_results(d, manifest)
    pd.testing.assert_frame_equal(default, before)  # our probes only, columns and order unchanged
    assert not [c for c in default.columns if c.startswith("stale")]

    listed, _ = collect_checkpoint_results(d, manifest, probes=["gd_readout", "associative_recall"])
    assert "error_reduction" in listed and "ar_acc" in listed
    assert "total_contraction" not in listed and "stale" not in listed

    given = [d / f"step{s}" / f"{p}.json" for s in STEPS for p in ("induction", "attention_sinks")]
    given += [d / "prompts" / "gd_readout.json"]  # a prompt file among them is not read either
    t, layers = collect_checkpoint_results(d, manifest, results=given)
    assert list(t["step"]) == STEPS
    metric_bases = {c for c in t.columns if c not in ID_COLUMNS and not c.endswith(("_std", "_ci_lo", "_ci_hi"))}
    assert metric_bases == set(SCALARS["induction"]) | set(SCALARS["attention_sinks"])
    assert set(layers["metric"]) == {"surprisal", "sink_frac"}


def test_only_given_revisions_are_rows(model):
    d, manifest = model
    given = [d / "step4" / "gd_readout.json", d / "step8" / "gd_readout.json"]
    t, _ = collect_checkpoint_results(d, manifest, results=[str(p) for p in given])
    assert list(t["revision"]) == ["step4", "step8"]


THIRD_PARTY = '''
from icl_probe.probes.base import Pass, Probe

PROBE = Probe(name="tp_scores", summary="a third-party probe for the table tests",
              passes=(Pass("tp", lambda *a, **k: [], prompts="induction"),),
              metric=lambda **k: {}, scalars=("zeta", "alpha"), prompt_axes={})
'''


def test_a_third_party_probes_scalars_are_columns(model, tmp_path):
    """Its scalars (named by the registry, with the stats settings' external; else, for a probe whose
    module is not at hand, by the result's keys) follow ours, each with _std, _ci_lo, _ci_hi, in the
    order of the probes list; our columns keep their order."""
    d, manifest = model
    ours, _ = collect_checkpoint_results(d, manifest)
    for i, s in enumerate(STEPS):
        (d / f"step{s}" / "tp_scores.json").write_text(json.dumps(_result(
            "tp_scores", {"alpha": float(i), "alpha_std": 0.1, "alpha_ci": [i - 0.2, i + 0.2],
                          "zeta": 2.0 * i, "zeta_std": 0.2, "zeta_ci": [None, None]}, f"step{s}", s)))
        (d / f"step{s}" / "tp_keys.json").write_text(json.dumps(_result(
            "tp_keys", {"omega": 1.0, "omega_std": 0.1, "omega_ci": [0.8, 1.2], "beta": 3.0}, f"step{s}", s)))
    module = tmp_path / "tp_scores.py"
    module.write_text(THIRD_PARTY)
    probes = list(SCALARS) + ["tp_scores", "tp_keys"]
    t, _ = collect_checkpoint_results(d, manifest, probes=probes, external=[str(module)])
    n = len(ours.columns)
    assert list(t.columns[:n]) == list(ours.columns)
    assert list(t.columns[n:]) == ["zeta", "zeta_std", "zeta_ci_lo", "zeta_ci_hi",  # the registry's order
                                   "alpha", "alpha_std", "alpha_ci_lo", "alpha_ci_hi",
                                   "omega", "omega_std", "omega_ci_lo", "omega_ci_hi", "beta"]  # the file's
    assert t["alpha"].tolist() == [float(i) for i in range(len(STEPS))] and t["zeta_ci_lo"].isna().all()
    assert t["omega_ci_hi"].tolist() == [1.2] * len(STEPS)
    # not in the probes list: not read
    t2, _ = collect_checkpoint_results(d, manifest, probes=list(SCALARS) + ["tp_keys"])
    assert "zeta" not in t2 and "omega" in t2
