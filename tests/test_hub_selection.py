"""Revision selection specs, with property tests against brute-force definitions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icl_probe.hub.errors import RevisionNotFoundError
from icl_probe.hub.selection import select_revisions
from icl_probe.hub.suites import parse_revision, pythia_revisions

PYTHIA = pythia_revisions()
steps_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=60, unique=True)


def _names(steps):
    return [f"step{s}" for s in steps]


def _step(name):
    return parse_revision(name)[0]


def test_all_orders_by_step_and_dedupes():
    assert select_revisions(["step10", "step2", "step10", "step0"], "all") == ["step0", "step2", "step10"]


def test_log12_on_pythia():
    got = select_revisions(PYTHIA, "log:12")
    assert len(got) == 12 and got[0] == "step0" and got[-1] == "step143000"
    logs = [math.log1p(_step(r)) for r in got]
    gaps = [b - a for a, b in zip(logs, logs[1:])]
    assert max(gaps) < 2.5 * (logs[-1] / 11)  # roughly even on the log scale


def test_every_and_range():
    assert select_revisions(PYTHIA, "every:50") == ["step0", "step40000", "step90000", "step140000"]
    assert select_revisions(PYTHIA, "range:100-2000") == ["step128", "step256", "step512", "step1000", "step2000"]
    assert select_revisions(PYTHIA, "range:5-5") == []


def test_explicit_list():
    assert select_revisions(PYTHIA, ["step2000", "step1"]) == ["step1", "step2000"]
    with pytest.raises(RevisionNotFoundError) as err:
        select_revisions(PYTHIA, ["step1", "step1001"], repo_id="EleutherAI/pythia-70m")
    assert "step1000" in err.value.closest and "EleutherAI/pythia-70m" in str(err.value)


@pytest.mark.parametrize("spec", ["", "log", "log:0", "log:-1", "log:x", "every:0", "range:5", "range:9-3",
                                  "range:a-b", "first:3", "ALL", 3, None, [], [1, 2], {"log": 3}])
def test_malformed_spec_is_a_clear_value_error(spec):
    with pytest.raises(ValueError, match="selection"):
        select_revisions(PYTHIA, spec)


def test_malformed_message_lists_forms():
    with pytest.raises(ValueError) as err:
        select_revisions(PYTHIA, "first:3")
    for form in ("all", "log:N", "every:K", "range:A-B"):
        assert form in str(err.value)


@settings(max_examples=200, deadline=None)
@given(steps=steps_lists, n=st.integers(1, 80))
def test_log_properties(steps, n):
    names = _names(steps)
    got = select_revisions(names, f"log:{n}")
    ordered = sorted(names, key=_step)
    assert len(got) == min(n, len(names))
    assert len(set(got)) == len(got)
    assert [_step(r) for r in got] == sorted(_step(r) for r in got)
    assert set(got) <= set(names)
    if n >= 2:
        assert got[0] == ordered[0] and got[-1] == ordered[-1]
    else:
        assert got == [ordered[-1]]


@settings(max_examples=200, deadline=None)
@given(steps=steps_lists, k=st.integers(1, 20))
def test_every_matches_brute_force(steps, k):
    ordered = sorted(_names(steps), key=_step)
    assert select_revisions(_names(steps), f"every:{k}") == [r for i, r in enumerate(ordered) if i % k == 0]


@settings(max_examples=200, deadline=None)
@given(steps=steps_lists, a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_range_matches_brute_force(steps, a, b):
    lo, hi = min(a, b), max(a, b)
    got = select_revisions(_names(steps), f"range:{lo}-{hi}")
    assert got == sorted((r for r in _names(steps) if lo <= _step(r) <= hi), key=_step)
