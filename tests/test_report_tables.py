"""tables.html: the summary and QC tables of a suite, for the report."""

import math

import pandas as pd

from icl_probe.report_tables import SUMMARY_SHOWN, fmt, summary_rows, tables_html


def test_numbers_are_three_significant_digits_steps_whole_and_empty_is_none():
    assert [fmt(v) for v in (2.1634, -0.04263, 0.0, 2223.4, 21, None, math.nan, "", "stable", True)] == [
        "2.16", "-0.0426", "0", "2223", "21", "none", "none", "none", "stable", "yes"]


def _summary():
    row = {"suite": "mini", "model": "pythia-s", "n_checkpoints": 21, "qc_status": "clean",
           "phases": "emergence without valley", "half_max_step_interp": 1171.6,
           "half_max_step_interp_ci_lo": 1040.2, "half_max_step_interp_ci_hi": 1302.9,
           "zero_crossing_interp": math.nan, "peak_er": 2.1634, "peak_er_ci_lo": 1.94, "peak_er_ci_hi": 2.37,
           "lifecycle": "stable", "er_decay": -0.04263, "er_decay_ci_lo": math.nan, "er_decay_ci_hi": math.nan}
    return pd.DataFrame([row])


def test_each_model_row_shows_its_values_with_their_intervals():
    (cells,) = summary_rows(_summary())
    shown = dict(zip(["model", *(c for c, _, _ in SUMMARY_SHOWN)], cells))
    assert shown["model"] == "pythia-s" and shown["n_checkpoints"] == "21"
    assert shown["half_max_step_interp"] == "1172 [1040, 1303]"
    assert shown["peak_er"] == "2.16 [1.94, 2.37]"
    assert shown["er_decay"] == "-0.0426"  # no interval recorded: the value alone
    assert shown["zero_crossing_interp"] == "none" and shown["co_emergence_lag"] == "none"  # absent column


def test_the_page_holds_both_tables_escaped():
    qc = pd.DataFrame([{"suite": "mini", "model": "pythia-m", "status": "partly measured", "kind": "partial",
                        "reason": "ar_acc <missing> at 2", "revisions": "step4;step8"}])
    page = tables_html("mini", _summary(), qc)
    assert page.count("<table>") == 2 and "Suite mini" in page
    assert "<td>pythia-s</td>" in page and '<td class="num">1172 [1040, 1303]</td>' in page
    assert "ar_acc &lt;missing&gt; at 2" in page and "step4; step8" in page
