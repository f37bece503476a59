"""Quality control: duplicates, identical metric vectors, non-finite values, missing checkpoints."""

import numpy as np
import pandas as pd

from icl_probe.aggregate import aggregate_model
from icl_probe.io import read_json
from icl_probe.stats import qc
from icl_probe.stats.synthetic import default_curves, write_model
from icl_probe.stats.table import collect_checkpoint_results

STEPS = [0, 1, 2, 4, 8, 16, 1000, 2000, 4000]
CFG = {"bootstrap": 50}


def table(revisions, steps, **metrics):
    return pd.DataFrame({"suite": "mini", "model": "m", "revision": revisions, "step": steps, **metrics})


def test_constant_trajectory_is_flagged():
    t = table([f"step{s}" for s in STEPS], STEPS, error_reduction=[0.3] * 9, sign_agreement=[0.6] * 9)
    issues = qc.run_qc(t)
    assert [i["reason"] for i in issues] == ["identical metrics at 9 checkpoints"]
    assert len(issues[0]["revisions"]) == 9


def test_two_identical_checkpoints_and_aliases_are_not_flagged():
    # step0 == step1 (Pythia alias) and main == final step: only two distinct checkpoints each
    revs = ["step0", "step1", "step2", "step4", "main"]
    t = table(revs, [0, 1, 2, 4, 4], error_reduction=[0.0, 0.0, 0.5, 1.0, 1.0])
    assert qc.identical_metric_vectors(t, qc.alias_canonical(list(zip(revs, [0, 1, 2, 4, 4])), True)) == []
    # three real checkpoints alike are flagged
    t3 = table(["step2", "step4", "step8"], [2, 4, 8], error_reduction=[1.0, 1.0, 1.0])
    assert qc.identical_metric_vectors(t3)[0]["revisions"] == ["step2", "step4", "step8"]


def test_nan_and_inf_flagged_but_nullable_fit_metrics_are_not():
    t = table(["a", "b", "c"], [0, 1, 2], error_reduction=[0.0, np.nan, 1.0], ar_acc=[0.1, 0.2, np.inf],
              rho2_per_layer=[np.nan, np.nan, 0.8])
    reasons = {i["reason"]: i["revisions"] for i in qc.non_finite(t)}
    assert reasons == {"non-finite error_reduction": ["b"], "non-finite ar_acc": ["c"]}


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
        {"reason": "duplicate weights", "revisions": ["step4", "step8"]}]
    fps["step2"] = "A"  # step2 serves step0's weights: not an alias
    issues = qc.duplicate_weights(manifest, fps, canon)
    assert {"reason": "duplicate weights", "revisions": ["step0", "step1", "step2"]} in issues


def test_step0_step1_alias_only_for_pythia():
    canon = qc.alias_canonical([("step0", 0), ("step1", 1)], pythia=False)
    assert qc.duplicate_weights(None, {"step0": "A", "step1": "A"}, canon)[0]["revisions"] == ["step0", "step1"]


def test_missing_checkpoints():
    present = {"step0": {"gd_readout", "induction"}, "step1": {"gd_readout"}}
    issues = qc.missing_checkpoints(["step0", "step1", "step2"], present)
    assert issues == [{"reason": "missing checkpoints", "revisions": ["step1", "step2"]}]
    assert qc.missing_checkpoints(["step0"], present) == []


def test_flagged_model_is_excluded_but_kept_on_disk(tmp_path):
    d = tmp_path / "mini" / "pythia-s"
    weights = {"step2": "f" * 64, "step4": "f" * 64}
    manifest = write_model(d, "mini", "pythia-s", STEPS, default_curves(STEPS), weights=weights)
    paths = aggregate_model(d, manifest, CFG)
    stats, qcj = read_json(paths["stats"]), read_json(paths["qc"])
    assert stats["excluded"] and stats["statistics"] == {}
    assert qcj["issues"] == [{"reason": "duplicate weights", "revisions": ["step2", "step4"]}]
    t = pd.read_csv(paths["table"])
    assert set(t.loc[t["qc_flag"].notna(), "revision"]) == {"step2", "step4"}
    assert (d / "step2" / "gd_readout.json").exists()  # raw results stay


def test_missing_result_file_is_flagged(tmp_path):
    d = tmp_path / "mini" / "olmo2-s"
    manifest = write_model(d, "mini", "olmo2-s", STEPS, skip=("step16",))
    (d / "step4" / "induction.json").unlink()
    aggregate_model(d, manifest, CFG)
    issues = read_json(d / "qc.json")["issues"]
    assert issues == [{"reason": "missing checkpoints", "revisions": ["step16", "step4"]}]
    t, _ = collect_checkpoint_results(d, manifest)
    assert "step16" not in set(t["revision"])
