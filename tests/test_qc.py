"""Quality control: duplicates, identical metric vectors, non-finite values, missing checkpoints,
and the issue kinds (excluded / partly measured / note)."""

import numpy as np
import pandas as pd
import pytest

from icl_probe.aggregate import aggregate_model, aggregate_table
from icl_probe.io import read_json
from icl_probe.stats import qc
from icl_probe.stats.synthetic import default_curves, write_model
from icl_probe.stats.table import METRICS, collect_checkpoint_results

STEPS = [0, 1, 2, 4, 8, 16, 1000, 2000, 4000]
CFG = {"bootstrap": 50}


def table(revisions, steps, **metrics):
    return pd.DataFrame({"suite": "mini", "model": "m", "revision": revisions, "step": steps, **metrics})


def full_precision(n_rows, n_cols=12, seed=0):
    """n_rows distinct rows of n_cols full-precision metrics (spec names)."""
    rng = np.random.default_rng(seed)
    names = [m for m in METRICS if m not in qc.NULLABLE][:n_cols]
    return {m: rng.normal(size=n_rows) for m in names}


def test_full_precision_identical_vectors_at_three_checkpoints_are_excluded():
    cols = full_precision(9, n_cols=12)
    for m in cols:  # step4, step8, step16 repeat step2's whole vector (a revision never loaded)
        cols[m][3:6] = cols[m][2]
    t = table([f"step{s}" for s in STEPS], STEPS, **cols)
    issues = qc.run_qc(t)
    assert issues == [{"kind": "excluded", "reason": "identical metrics at 4 checkpoints",
                       "revisions": ["step2", "step4", "step8", "step16"]}]
    assert qc.is_excluded(issues) and qc.qc_status(issues) == "excluded"
    # exactly three repeats (counting the first) of 10 metrics: still excluded
    cols = full_precision(9, n_cols=10)
    for m in cols:
        cols[m][[6, 7]] = cols[m][8]
    issues = qc.identical_metric_vectors(table([f"step{s}" for s in STEPS], STEPS, **cols))
    assert [(i["kind"], i["revisions"]) for i in issues] == [("excluded", ["step1000", "step2000", "step4000"])]


def test_rounded_flat_plateau_is_not_excluded():
    # a table published to 2 decimals: ER 0.00 and SA 0.50 repeat at 5 checkpoints, as do other columns
    steps = [0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    er = [0.00, 0.00, 0.00, 0.00, 0.00, -0.12, -0.31, 0.25, 1.10, 1.42]
    sa = [0.50, 0.50, 0.50, 0.50, 0.50, 0.55, 0.61, 0.74, 0.85, 0.88]
    ind = [0.01, 0.01, 0.01, 0.01, 0.01, 0.05, 0.20, 0.55, 0.80, 0.84]
    t = table([f"step{s}" for s in steps], steps, error_reduction=er, sign_agreement=sa, induction_acc=ind,
              late_early_ratio=[1.00] * 5 + [1.2, 1.9, 2.6, 2.9, 3.0])
    issues = qc.run_qc(t)
    assert not qc.is_excluded(issues) and qc.qc_status(issues) == "clean"
    assert issues == [{"kind": "note", "reason": "identical-metric check not applicable: rounded columns",
                       "revisions": []}]
    # rounded plateau columns next to full-precision ones that differ: checked, nothing found
    rng = np.random.default_rng(1)
    fp = {m: rng.normal(size=10) for m in ("slope_alpha", "rho_pred", "rho_obs")}
    assert qc.run_qc(table([f"step{s}" for s in steps], steps, error_reduction=er, sign_agreement=sa, **fp)) == []


def test_two_identical_checkpoints_and_aliases_are_not_flagged():
    # step0 == step1 (Pythia alias) and main == final step: only two distinct checkpoints each
    revs = ["step0", "step1", "step2", "step4", "main"]
    v = [0.123456789, 0.987654321, 0.55555555555]
    rows = np.array([v, v, [0.2345678, 0.3456789, 0.4567891], [0.6123457, 0.7123457, 0.8123457],
                     [0.6123457, 0.7123457, 0.8123457]])
    cols = {m: rows[:, k] for k, m in enumerate(["error_reduction", "sign_agreement", "ar_acc"])}
    t = table(revs, [0, 1, 2, 4, 4], **cols)
    assert qc.identical_metric_vectors(t, qc.alias_canonical(list(zip(revs, [0, 1, 2, 4, 4])), True)) == []
    # three real checkpoints alike are flagged
    t3 = table(["step2", "step4", "step8"], [2, 4, 8], **{m: [x] * 3 for m, x in zip(cols, v)})
    assert qc.identical_metric_vectors(t3)[0]["revisions"] == ["step2", "step4", "step8"]
    # ... but not when one of them differs in one column (not a whole repeated vector)
    t3.loc[2, "ar_acc"] = 0.1234567
    assert qc.identical_metric_vectors(t3) == []


def test_inf_excludes_nan_is_partly_measured_and_nullable_fit_metrics_are_not_flagged():
    t = table(["a", "b", "c"], [0, 1, 2], error_reduction=[0.0, np.nan, 1.0], ar_acc=[0.1, 0.2, np.inf],
              rho2_per_layer=[np.nan, np.nan, 0.8])
    issues = qc.run_qc(t)
    assert {(i["kind"], i["reason"]): i["revisions"] for i in issues if i["kind"] != "note"} == {
        ("excluded", "infinite ar_acc"): ["c"], ("partial", "partly measured: error_reduction"): ["b"]}
    assert qc.is_excluded(issues) and qc.qc_status(issues) == "excluded"
    assert qc.qc_summary(issues).startswith("excluded: infinite ar_acc; partly measured: error_reduction "
                                            "(1 of 3 checkpoints missing)")
    t.loc[2, "ar_acc"] = 0.3  # without the inf: partly measured, not excluded
    issues = qc.run_qc(t)
    assert not qc.is_excluded(issues) and qc.qc_status(issues) == "partly measured"


def test_heldout_measured_at_two_of_twelve_checkpoints_is_partly_measured(tmp_path):
    steps = [0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    er = np.array([0.0, 0.0, -0.05, -0.2, -0.4, -0.3, 0.1, 0.6, 1.2, 1.6, 1.8, 1.7]) + 0.0123456789
    ind = np.full(12, np.nan)
    ar = np.full(12, np.nan)
    ind[[4, 11]], ar[[4, 11]] = [0.21, 0.83], [0.12, 0.47]
    rows = pd.DataFrame({"model": "pub", "step": steps, "error_reduction": er, "error_reduction_std": 0.05,
                         "sign_agreement": np.linspace(0.5, 0.9, 12) + 0.00123456789,
                         "induction_acc": ind, "ar_acc": ar})
    rows.to_csv(tmp_path / "t.csv", index=False)
    out = aggregate_table(tmp_path / "t.csv", tmp_path / "o", CFG, figures=False)
    qct = pd.read_csv(out["qc"], keep_default_na=False)
    assert list(qct.columns) == ["suite", "model", "status", "kind", "reason", "revisions"]
    assert set(qct["status"]) == {"partly measured"} and "excluded" not in set(qct["kind"])
    part = qct[qct["kind"] == "partial"].set_index("reason")["revisions"].to_dict()
    missing = ";".join(f"step{s}" for i, s in enumerate(steps) if i not in (4, 11))
    assert part == {"partly measured: induction_acc": missing, "partly measured: ar_acc": missing}
    st = read_json(out["stats"])["models"]["pub"]
    assert not st["excluded"] and st["qc_status"] == "partly measured"
    assert st["statistics"]["peak_er"] == pytest.approx(1.8123456789)
    summary = pd.read_csv(out["summary"]).set_index("model")
    assert not summary.loc["pub", "excluded"]
    assert "induction_acc (10 of 12 checkpoints missing)" in summary.loc["pub", "qc"]


def test_duplicate_steps_are_a_note_independent_of_row_order():
    cols = full_precision(5, n_cols=4)
    t = table(["step0", "step10", "step100", "step100-rerun", "step1000"], [0, 10, 100, 100, 1000], **cols)
    issues = qc.run_qc(t)
    assert issues == [{"kind": "note", "reason": "duplicate step 100", "revisions": ["step100", "step100-rerun"]}]
    assert not qc.is_excluded(issues) and qc.qc_status(issues) == "clean"
    swapped = t.iloc[[0, 1, 3, 2, 4]].reset_index(drop=True)
    assert qc.run_qc(swapped) == issues
    # main and the final step are an alias, not a duplicate step
    t2 = table(["step0", "step10", "step1000", "main"], [0, 10, 1000, 1000], **full_precision(4, n_cols=4))
    assert qc.duplicate_steps(t2, qc.alias_canonical(list(zip(t2["revision"], t2["step"])), False)) == []


def test_duplicate_weights_from_manifest_and_fingerprints(tmp_path):
    manifest = {"suite": "mini", "model": "pythia-s", "revisions": [
        {"revision": "step0", "step": 0}, {"revision": "step1", "step": 1},
        {"revision": "step2", "step": 2}, {"revision": "step4", "step": 4},
        {"revision": "step8", "step": 8, "duplicate_of": "step4"},
        {"revision": "main", "step": 8}]}
    canon = qc.alias_canonical([(e["revision"], e["step"]) for e in manifest["revisions"]], pythia=True)
    assert canon["main"] == "step8" and canon["step1"] == "step0"
    fps = {"step0": "A", "step1": "A", "step2": "B", "step4": "C", "main": "D", "step8": "D"}
    assert qc.duplicate_weights(manifest, fps, canon) == [
        {"kind": "excluded", "reason": "duplicate weights", "revisions": ["step4", "step8"],
         "details": {"step8": "duplicate of step4"}}]  # a manifest without integrity texts: said from duplicate_of
    fps["step2"] = "A"  # step2 serves step0's weights: not an alias
    issues = qc.duplicate_weights(manifest, fps, canon)
    assert {"kind": "excluded", "reason": "duplicate weights", "revisions": ["step0", "step1", "step2"]} in issues


def test_a_duplicate_in_the_manifest_and_in_the_fingerprints_is_one_issue():
    # the resolver's duplicate_of and the weight fingerprints (from the same sha256) name one group
    manifest = {"revisions": [{"revision": "step1000", "step": 1000, "duplicate_of": "step2000",
                               "integrity": "duplicate of step2000"},
                              {"revision": "step2000", "step": 2000}, {"revision": "step500", "step": 500}]}
    fps = {"step500": "A", "step1000": "B", "step2000": "B"}
    assert qc.duplicate_weights(manifest, fps, {}) == [
        {"kind": "excluded", "reason": "duplicate weights", "revisions": ["step1000", "step2000"],
         "details": {"step1000": "duplicate of step2000"}}]


def test_step0_step1_alias_only_for_pythia():
    canon = qc.alias_canonical([("step0", 0), ("step1", 1)], pythia=False)
    assert qc.duplicate_weights(None, {"step0": "A", "step1": "A"}, canon)[0]["revisions"] == ["step0", "step1"]


def _alias_manifest(suite, model, step1_alias_of):
    """step0, step1, step2, step4 of one model, as the resolver writes them."""
    return {"suite": suite, "model": model, "repo_id": f"acme/{model}", "revisions": [
        {"revision": r, "step": s, "duplicate_of": None, "alias_of": step1_alias_of if r == "step1" else None}
        for r, s in (("step0", 0), ("step1", 1), ("step2", 2), ("step4", 4))]}


def _alias_table(suite, model):
    """step1 and step2 repeat step0's whole metric vector (step1 shares step0's weights)."""
    cols = full_precision(4, n_cols=4)
    for m in cols:
        cols[m][[1, 2]] = cols[m][0]
    return table(["step0", "step1", "step2", "step4"], [0, 1, 2, 4], **cols).assign(suite=suite, model=model)


FPS = {"step0": "A", "step1": "A", "step2": "B", "step4": "C"}  # step1 serves step0's weights


def test_manifest_alias_of_is_an_alias_whatever_the_model_is_called():
    manifest = _alias_manifest("acme", "tiny-lm", "step0")  # no "pythia" anywhere in the names
    assert qc.manifest_canonical(manifest) == {"step0": "step0", "step1": "step0", "step2": "step2", "step4": "step4"}
    # step0 = step1 counted once: no duplicate weights, and only 2 distinct checkpoints repeat a vector
    assert qc.run_qc(_alias_table("acme", "tiny-lm"), manifest, FPS) == []
    # the same manifest without alias_of: the shared weights are a duplicate, three checkpoints repeat
    issues = qc.run_qc(_alias_table("acme", "tiny-lm"), _alias_manifest("acme", "tiny-lm", None), FPS)
    assert {(i["reason"], tuple(i["revisions"])) for i in issues} == {
        ("duplicate weights", ("step0", "step1")),
        ("identical metrics at 3 checkpoints", ("step0", "step1", "step2"))}


def test_pythia_named_model_without_alias_of_in_its_manifest_is_flagged():
    manifest = _alias_manifest("pythia", "pythia-160m", None)
    assert qc.manifest_canonical(manifest)["step1"] == "step1"  # the name is not read
    issues = qc.run_qc(_alias_table("pythia", "pythia-160m"), manifest, FPS)
    assert {"kind": "excluded", "reason": "duplicate weights", "revisions": ["step0", "step1"]} in issues
    assert qc.is_excluded(issues)
    # a table without a manifest (icl-probe aggregate --table) still guesses the alias from the name
    assert qc.run_qc(_alias_table("pythia", "pythia-160m")) == []
    assert [i["revisions"] for i in qc.run_qc(_alias_table("acme", "tiny-lm"))] == [["step0", "step1", "step2"]]


def test_missing_checkpoints():
    present = {"step0": {"gd_readout", "induction"}, "step1": {"gd_readout"}}
    issues = qc.missing_checkpoints(["step0", "step1", "step2"], present)
    assert issues == [{"kind": "excluded", "reason": "missing checkpoints", "revisions": ["step1", "step2"]}]
    assert qc.missing_checkpoints(["step0"], present) == []


def test_flagged_model_is_excluded_but_kept_on_disk(tmp_path):
    d = tmp_path / "mini" / "pythia-s"
    weights = {"step2": "f" * 64, "step4": "f" * 64}
    manifest = write_model(d, "mini", "pythia-s", STEPS, default_curves(STEPS), weights=weights)
    paths = aggregate_model(d, manifest, CFG)
    stats, qcj = read_json(paths["stats"]), read_json(paths["qc"])
    assert stats["excluded"] and stats["statistics"] == {} and stats["qc_status"] == "excluded"
    assert qcj["issues"] == [{"kind": "excluded", "reason": "duplicate weights", "revisions": ["step2", "step4"]}]
    assert qcj["status"] == "excluded"
    t = pd.read_csv(paths["table"])
    assert set(t.loc[t["qc_flag"].notna(), "revision"]) == {"step2", "step4"}
    assert (d / "step2" / "gd_readout.json").exists()  # raw results stay


def test_missing_result_file_is_flagged(tmp_path):
    d = tmp_path / "mini" / "olmo2-s"
    manifest = write_model(d, "mini", "olmo2-s", STEPS, skip=("step16",))
    (d / "step4" / "induction.json").unlink()
    aggregate_model(d, manifest, CFG)
    issues = read_json(d / "qc.json")["issues"]
    assert issues == [{"kind": "excluded", "reason": "missing checkpoints", "revisions": ["step4", "step16"]}]
    t, _ = collect_checkpoint_results(d, manifest)
    assert "step16" not in set(t["revision"])


def test_issues_without_kind_count_as_excluded():
    # qc.json written before kinds existed
    old = [{"reason": "non-finite ar_acc", "revisions": ["step4"]}]
    assert qc.is_excluded(old) and qc.qc_status(old) == "excluded"
    assert qc.qc_status([]) == "clean" and not qc.is_excluded([])
