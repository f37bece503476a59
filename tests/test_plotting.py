"""Figures: files written, axis conventions, QC-flagged models marked."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

from icl_probe.plotting import FIGURES, ModelData, draw_all
from icl_probe.plotting.common import QC_COLOR, CheckpointAxis, draw_measured, styles
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


PARTIAL = {"kind": "partial", "reason": "partly measured: ar_acc", "revisions": ["step0", "step1", "step10"],
           "n_checkpoints": 5}
DUP = {"kind": "excluded", "reason": "duplicate weights", "revisions": ["x"]}


def test_the_caption_names_duplicate_and_corrupt_checkpoints():
    """A model excluded for shared weights: the legend keeps the short reason, the caption names
    each checkpoint and what is wrong with it (full duplicate versus corrupt shard)."""
    from icl_probe.plotting.common import qc_note

    issues = [{"kind": "excluded", "reason": "duplicate weights", "revisions": ["step1000", "step143000"],
               "details": {"step1000": "duplicate of step143000"}},
              {"kind": "excluded", "reason": "corrupt checkpoint (shards of another branch)",
               "revisions": ["step50000", "step143000"],
               "details": {"step50000": "corrupt: shard 1 of 3 is step143000's"}}]
    md = model("p12b", issues=issues)
    assert styles([md])["p12b"]["label"] == ("p12b (excluded: duplicate weights; "
                                             "corrupt checkpoint (shards of another branch))")
    note = qc_note([md])
    assert "step1000 duplicate of step143000" in note
    assert "step50000 corrupt: shard 1 of 3 is step143000's" in note


def test_clean_partly_measured_and_excluded_models_have_distinct_styles():
    note = {"kind": "note", "reason": "duplicate step 10", "revisions": ["step10", "step10b"]}
    sty = styles([model("a", issues=[note]), model("b", issues=[DUP]), model("p", issues=[PARTIAL])])
    assert sty["a"]["linestyle"] == "-" and sty["a"]["label"] == "a"  # a note does not change the style
    assert sty["b"]["linestyle"] == "--" and sty["b"]["color"] == QC_COLOR
    assert sty["b"]["label"] == "b (excluded: duplicate weights)"
    assert sty["p"]["linestyle"] == "-" and sty["p"]["color"] not in (QC_COLOR, sty["a"]["color"])
    assert sty["p"]["label"] == "p (partly measured)"
    old = model("o", issues=[{"reason": "missing checkpoints", "revisions": ["x"]}])  # qc.json without kinds
    assert styles([old])["o"]["label"] == "o (excluded: missing checkpoints)"


def test_partly_measured_column_has_markers_only_where_measured():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    x = np.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    (line,) = draw_measured(ax, x, np.array([np.nan, np.nan, np.nan, 0.3, 0.5]), markersize=3, color="C1")
    assert line.get_xdata().tolist() == [100.0, 1000.0] and line.get_ydata().tolist() == [0.3, 0.5]
    assert line.get_marker() == "o" and line.get_markersize() == 6  # enlarged: only a few points
    (full,) = draw_measured(ax, x, np.arange(5.0), markersize=3)
    assert len(full.get_xdata()) == 5 and full.get_markersize() == 3
    plt.close(fig)


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
    assert "digits" in caption and "bad (missing checkpoints)" in caption and "grey and dashed" in caption
    part = model("p", ar_acc=[np.nan, np.nan, np.nan, 0.2, 0.4], issues=[PARTIAL])
    _, caption = plot_emergence([model("a"), part], tmp_path)
    assert "partly measured" in caption and "p (ar_acc at 2 of 5 checkpoints)" in caption
    assert "grey" not in caption


def test_figures_of_a_clean_partly_measured_and_excluded_model(tmp_path):
    part = model("p", ar_acc=[np.nan, np.nan, np.nan, 0.2, 0.4], sign_agreement=np.linspace(0.5, 0.9, 5),
                 issues=[PARTIAL])
    out = draw_all([model("a", ar_acc=np.linspace(0, 0.5, 5)), part, model("b", issues=[DUP])], tmp_path)
    for name in FIGURES:
        assert all(p.stat().st_size > 1000 for p in out[name]["paths"])
        caption = out[name]["caption"]
        assert "markers only at the checkpoints where a column was measured" in caption
        assert "p (ar_acc at 2 of 5 checkpoints)" in caption
        assert caption.endswith("Excluded by quality control and drawn grey and dashed: b (duplicate weights).")


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
    partial = [PARTIAL]  # partly measured is not excluded: it may be shown
    models = [with_layers("shallow", 2), with_layers("deep", 3), with_layers("deepest-but-flagged", 6, [flagged])]
    _, caption = plot_contraction(models + [with_layers("deeper-partial", 4, partial)], tmp_path)
    assert "checkpoints of deeper-partial (" in caption
    _, caption = plot_contraction(models, tmp_path)
    assert "checkpoints of deep (" in caption
    _, caption = plot_contraction([with_layers("a", 2, [flagged]), with_layers("b", 4, [flagged])], tmp_path)
    assert "checkpoints of b (" in caption


def test_draw_all_writes_each_caption_as_rst_that_renders_as_the_caption(tmp_path):
    """The report shows {name}.rst: docutils must render it back to the caption's words, even
    for model names and formulas with reStructuredText markup characters in them."""
    import html
    import re

    from docutils.core import publish_parts

    odd = model("pythia_*x*|1|", issues=[{"reason": "missing checkpoints", "revisions": ["step10"]}])
    out = draw_all([model("a"), odd], tmp_path)
    for name in FIGURES:
        path = out[name]["caption_file"]
        assert path == tmp_path / f"{name}.rst"
        body = publish_parts(path.read_text(), writer="html",
                             settings_overrides={"report_level": 5})["body"]
        assert body.count("<p>") == 1, body  # one paragraph, no other markup
        assert html.unescape(re.sub(r"<[^>]+>", "", body)).split() == out[name]["caption"].split()


def test_a_third_party_probe_gets_the_probe_scalars_figure(tmp_path):
    """An enabled probe that is not ours has no dedicated figure: its scalars are drawn in probe_scalars."""
    from pathlib import Path

    example = str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "counting.py")
    a = model("a", count_acc=np.linspace(0.1, 0.9, 5), count_logp=np.linspace(-5, -1, 5))
    b = model("b", count_acc=[np.nan, 0.2, 0.4, np.nan, 0.8])
    cfg = {"probes": ["gd_readout", "counting"], "external": [example]}
    out = draw_all([a, b], tmp_path, cfg)
    assert set(out) == set(FIGURES) | {"probe_scalars"}
    assert all(p.exists() for p in out["probe_scalars"]["paths"])
    assert "counting: count_acc, count_logp" in out["probe_scalars"]["caption"]
    assert (tmp_path / "probe_scalars.rst").exists()
    assert "probe_scalars" not in draw_all([a], tmp_path / "ours", {"probes": ["gd_readout"]})


# --- readability: labels from one table, every marker visible, one x axis, identified points ---


@pytest.fixture
def kept(monkeypatch):
    """The figures ``save`` would close, kept open: name (its label) -> Figure; closed afterwards."""
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    yield lambda: {plt.figure(n).get_label(): plt.figure(n) for n in plt.get_fignums()}
    monkeypatch.undo()
    plt.close("all")


def same_crossing(name, step=31.6, **cols):
    md = model(name, sign_agreement=np.linspace(0.5, 0.9, 5), late_early_ratio=np.linspace(1, 3, 5),
               rho_pred=np.linspace(1, 1.3, 5), rho_obs=np.linspace(1, 1.25, 5), ar_acc=np.linspace(0, 0.5, 5),
               **cols)
    md.stats = {"statistics": {"zero_crossing_interp": step, "sink_half_rise_step": 100.0, "peak_step": 1000.0}}
    return md


def display_xy(line):
    xy = np.column_stack([line.get_xdata(), line.get_ydata()])
    return line.get_transform().transform(xy)


def test_coinciding_zero_crossings_stay_visible(tmp_path, kept):
    """Three models with the same zero-crossing step: three diamonds, at the crossing's x,
    none covering another on screen; the caption says they are stacked."""
    models = [same_crossing(n) for n in ("a", "b", "c")]
    _, caption = plot_emergence(models, tmp_path)
    ax = kept()["emergence"].axes[0]
    fig = ax.figure
    fig.canvas.draw()
    diamonds = [ln for ln in ax.get_lines() if ln.get_marker() == "D" and len(ln.get_xdata())]
    assert len(diamonds) == 3
    assert {ln.get_markeredgecolor() for ln in diamonds} == {styles(models)[m]["color"] for m in "abc"}
    pos = np.array([display_xy(ln)[0] for ln in diamonds])
    size_px = diamonds[0].get_markersize() * fig.dpi / 72
    assert np.allclose(pos[:, 0], pos[0, 0])  # all at the crossing's step
    gaps = [np.linalg.norm(p - q) for i, p in enumerate(pos) for q in pos[i + 1:]]
    assert min(gaps) >= size_px  # no diamond hides another
    zero_y = ax.transData.transform([[1.0, 0.0]])[0, 1]
    assert np.isclose(pos[:, 1].mean(), zero_y)  # centred on the 0 line
    assert "hollow diamond" in caption and "stacked vertically" in caption
    _, alone = plot_emergence([same_crossing("a"), same_crossing("b", step=600.0)], tmp_path / "apart")
    assert "hollow diamond" in alone and "stacked" not in alone  # said only when it happened


def test_coinciding_coemergence_lines_are_side_by_side(tmp_path, kept):
    from icl_probe.plotting.coemergence import plot_coemergence

    models = [same_crossing(n) for n in ("a", "b", "c")]
    plot_coemergence(models, tmp_path)
    fig = kept()["coemergence"]
    fig.canvas.draw()
    for ax in fig.axes:
        vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata()) == 2]
        xs = sorted(display_xy(ln)[0, 0] for ln in vlines)
        assert len(xs) == 3 and min(np.diff(xs)) > 1.0  # three lines, on distinct pixels


def line_triple(line):
    return (matplotlib.colors.to_hex(line.get_color()), str(line.get_linestyle()), line.get_marker())


def test_lines_of_the_layer_figures_are_distinguishable(tmp_path, kept):
    """Five identical surprisal curves (contraction, right) and three identical readout curves
    (layer_readout): each line its own (colour, linestyle, marker), and their markers apart on screen."""
    from icl_probe.plotting.contraction import plot_contraction
    from icl_probe.plotting.layers import plot_layer_readout

    md = model("a")
    md.layers = pd.DataFrame([{"revision": f"step{s}", "step": float(s), "metric": m, "layer": l, "value": 5.0}
                              for s in (0, 1, 10, 100, 1000) for m in ("surprisal", "mean_err") for l in range(4)])
    plot_contraction([md], tmp_path)
    plot_layer_readout([md, *(ModelData(suite="mini", model=n, table=md.table, layers=md.layers) for n in "bc")],
                       tmp_path)
    figs = kept()
    for name, ax, n in (("contraction", figs["contraction"].axes[1], 5),
                        ("layer_readout", figs["layer_readout"].axes[0], 3)):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
        assert len(lines) == n, name
        assert len({line_triple(ln) for ln in lines}) == n, name
        figs[name].canvas.draw()
        first = np.array([display_xy(ln)[0] for ln in lines])  # the layer-0 marker of each line
        gaps = np.diff(np.sort(first[:, 0]))
        assert min(gaps) >= 0.5 * lines[0].get_markersize() * figs[name].dpi / 72, name
        assert np.ptp(first[:, 1]) < 1e-6  # moved sideways only, never in value


def test_every_checkpoint_figure_of_a_run_uses_one_x_axis(tmp_path, kept):
    """The figures against training (emergence, coemergence, lifecycle, probe_scalars) share one
    x-axis label: steps for one suite (the life-cycle figure too), tokens for mixed suites."""
    from pathlib import Path

    from matplotlib._pylab_helpers import Gcf

    from icl_probe.plotting.common import LABELS

    example = str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "counting.py")
    cfg = {"probes": ["gd_readout", "counting"], "external": [example]}
    for suite_b, expected in (("mini", LABELS["step"]), ("olmo2", LABELS["tokens_B"])):
        models = [same_crossing("a", count_acc=np.linspace(0, 1, 5), count_logp=np.linspace(-3, -1, 5)),
                  same_crossing("b", count_acc=np.linspace(0, 1, 5), count_logp=np.linspace(-3, -1, 5))]
        models[1].suite = suite_b
        out = draw_all(models, tmp_path / suite_b, cfg)
        figs = kept()
        names = ("emergence", "coemergence", "lifecycle", "probe_scalars")
        xlabels = {name: {ax.get_xlabel() for ax in figs[name].axes if ax.get_xlabel()} for name in names}
        assert all(labels == {expected} for labels in xlabels.values()), xlabels
        assert all(expected in out[name]["caption"] for name in names)
        Gcf.destroy_all()  # plt.close("all"), which the fixture holds back


def test_axis_labels_are_human_names_with_units_from_one_table(tmp_path, kept):
    from icl_probe.plotting.common import LABELS, label

    assert label("slope_alpha") == "GD-readout slope α (slope_alpha)"
    assert label("sink_frac") == "sink fraction, share of attention on token 0 (sink_frac)"
    assert label("count_acc", "counting") == "count_acc (probe counting)"  # not ours: its code name
    assert "\n" in label("sign_agreement", width=30) and " ".join(label("sign_agreement", width=30).split()) \
        == LABELS["sign_agreement"]
    draw_all([same_crossing("a", induction_acc=np.linspace(0, 1, 5)), same_crossing("b")], tmp_path)
    known = set(LABELS.values())
    for name, fig in kept().items():
        for ax in fig.axes:
            for text in (ax.get_xlabel(), ax.get_ylabel()):
                if text:
                    assert " ".join(text.split()) in known, (name, text)
    ylabels = {" ".join(ax.get_ylabel().split()) for fig in kept().values() for ax in fig.axes}
    assert {LABELS[c] for c in ("error_reduction", "sign_agreement", "late_early_ratio", "rho_pred",
                                "mean_err", "surprisal", "heldout")} <= ylabels


def test_contraction_points_name_their_model_and_checkpoint(tmp_path, kept):
    from icl_probe.plotting.contraction import plot_contraction

    models = [same_crossing(n) for n in ("pythia-s", "pythia-m", "olmo2-s")]
    _, caption = plot_contraction(models, tmp_path)
    left = kept()["contraction"].axes[0]
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    notes = [t.get_text() for t in left.texts]
    for m in ("pythia-s", "pythia-m", "olmo2-s"):
        assert m in legend
        assert f"{m} step 0" in notes and f"{m} step 1000" in notes  # first and last checkpoint
    markers = {ln.get_marker() for ln in left.get_lines() if ln.get_linestyle() == "None"}
    assert len(markers) == 3  # a marker shape per model
    assert "labelled by model and step" in caption


def test_an_all_zero_sink_rate_says_why(tmp_path):
    from icl_probe.plotting.coemergence import plot_coemergence

    zero = [same_crossing(n, sink_rate_eps=0.0) for n in ("a", "b")]
    zero[0].layers = pd.concat([zero[0].layers, pd.DataFrame(
        [{"revision": "step10", "step": 10.0, "metric": "sink_frac", "layer": l, "value": v}
         for l, v in enumerate((0.04, 0.12))])])
    _, caption = plot_coemergence(zero, tmp_path)
    assert ("sink_rate_eps is 0 at every checkpoint: no head puts more than eps=0.3 of its attention on "
            "token 0; see sink_frac for the continuous measure (its largest layer mean there is 0.12).") in caption
    _, caption = plot_coemergence(zero, tmp_path, eps=0.5)
    assert "eps=0.5" in caption
    for md in zero:  # the threshold the results were made with (attention_sinks.json's settings)
        md.sink_eps = 0.2
    assert "eps=0.2 of its attention" in plot_coemergence(zero, tmp_path)[1]
    some = [same_crossing("a", sink_rate_eps=0.0), same_crossing("b", sink_rate_eps=[0, 0, 5.0, 10.0, 20.0])]
    _, caption = plot_coemergence(some, tmp_path)
    assert "sink_rate_eps is 0 at every checkpoint of a:" in caption
    _, caption = plot_coemergence([same_crossing("b", sink_rate_eps=[0, 0, 5.0, 10.0, 20.0])], tmp_path)
    assert "sink_rate_eps" not in caption  # not all zero: nothing to explain


def test_a_missing_mark_is_explained_from_stats_json(tmp_path):
    flat = same_crossing("a")
    flat.stats = {"statistics": {"zero_crossing_interp": None},
                  "null": {"zero_crossing_interp": "no valley: min ER >= -tau_min"}}
    _, caption = plot_emergence([flat, same_crossing("b")], tmp_path)
    assert "no diamond for a (no valley: min ER >= -tau_min)" in caption
    _, caption = plot_emergence([flat], tmp_path)
    assert "no model has a diamond (no valley: min ER >= -tau_min)" in caption
