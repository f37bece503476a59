"""Figures: files written, axis conventions, QC-flagged models marked."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from icl_probe.plotting import FIGURES, ModelData, draw_all
from icl_probe.plotting.common import CheckpointAxis, styles
from icl_probe.plotting.emergence import plot_emergence
from icl_probe.plotting.layers import readout_step


def model(name, suite="mini", steps=(0, 1, 10, 100, 1000), tokens_per_step=2e6, issues=(), **cols):
    steps = np.asarray(steps, dtype=float)
    er = np.array([0.0, -0.5, -0.2, 1.0, 2.0])[: len(steps)]
    t = pd.DataFrame({"suite": suite, "model": name, "revision": [f"step{int(s)}" for s in steps],
                      "step": steps, "tokens_B": steps * tokens_per_step / 1e9,
                      "error_reduction": er, "error_reduction_std": 0.1, **cols})
    layers = pd.DataFrame([{"revision": r, "step": s, "metric": m, "layer": l, "value": v}
                           for r, s in zip(t["revision"], steps)
                           for m, base in (("mean_err", 3.0), ("surprisal", 8.0))
                           for l, v in enumerate(base - np.arange(4) * 0.1 * np.log10(s + 1))])
    return ModelData(suite=suite, model=name, table=t, layers=layers,
                     stats={"statistics": {"zero_crossing": {"interpolated": 31.6}, "peak_step": 1000.0}},
                     issues=list(issues))


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_qc_flagged_models_are_grey_dashed_and_labelled():
    sty = styles([model("a"), model("b", issues=[{"reason": "duplicate weights", "revisions": ["x"]}])])
    assert sty["a"]["linestyle"] == "-" and sty["a"]["label"] == "a"
    assert sty["b"]["linestyle"] == "--" and sty["b"]["label"] == "b (QC: duplicate weights)"


def test_axis_steps_for_one_suite_tokens_for_mixed_suites():
    one = CheckpointAxis([model("a"), model("b")])
    assert not one.tokens and one.edge == pytest.approx(0.1) and "step" in one.label
    assert one.x(model("a"))[0] == pytest.approx(0.1)  # step 0 drawn at the left edge
    mixed = CheckpointAxis([model("a"), model("o", suite="olmo2")])
    assert mixed.tokens and "tokens" in mixed.label


def test_emergence_figure_files_and_caption(tmp_path):
    flagged = model("bad", issues=[{"reason": "missing checkpoints", "revisions": ["step10"]}])
    paths, caption = plot_emergence([model("a"), flagged], tmp_path)
    assert [p.name for p in paths] == ["emergence.png", "emergence.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert "digits" in caption and "bad (missing checkpoints)" in caption


def test_draw_all_with_and_without_optional_data(tmp_path):
    full = model("a", sign_agreement=np.linspace(0.5, 0.9, 5), late_early_ratio=np.linspace(1, 3, 5),
                 rho_pred=np.linspace(1, 1.3, 5), rho_obs=np.linspace(1, 1.25, 5), ar_acc=np.linspace(0, 0.5, 5))
    bare = model("b")
    bare.layers = None
    out = draw_all([full, bare], tmp_path, {"readout_checkpoint": "peak"})
    assert set(out) == set(FIGURES)
    for name in FIGURES:
        assert all(p.exists() for p in out[name]["paths"])
    assert "peak-ER checkpoint" in out["layer_readout"]["caption"]
    out = draw_all([bare], tmp_path / "bare")  # columns missing: "no data" panels, no crash
    assert (tmp_path / "bare" / "contraction.png").exists()


def test_readout_step_choices():
    md = model("a")
    assert readout_step(md, "final") == 1000.0
    assert readout_step(md, "peak") == 1000.0
    assert readout_step(md, 12) == 10.0


def test_contraction_shows_the_deepest_clean_model(tmp_path):
    from icl_probe.plotting.contraction import plot_contraction

    def with_layers(name, n_layers, issues=()):
        md = model(name, issues=issues)
        md.layers = pd.DataFrame([{"revision": f"step{s}", "step": float(s), "metric": "surprisal", "layer": l,
                                   "value": 8.0 - l} for s in (0, 10, 1000) for l in range(n_layers + 1)])
        return md

    flagged = {"reason": "duplicate weights", "revisions": ["x"]}
    models = [with_layers("shallow", 2), with_layers("deep", 3), with_layers("deepest-but-flagged", 6, [flagged])]
    _, caption = plot_contraction(models, tmp_path)
    assert "checkpoints of deep." in caption
    _, caption = plot_contraction([with_layers("a", 2, [flagged]), with_layers("b", 4, [flagged])], tmp_path)
    assert "checkpoints of b." in caption
