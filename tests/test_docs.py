"""The documentation stays in step with the outputs: every column of table.csv, summary.csv and
qc.csv has a heading in docs/metrics.md, and nothing points outside the repository."""

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from icl_probe.aggregate import aggregate_model, aggregate_suite
from icl_probe.stats.synthetic import write_model
from icl_probe.stats.table import ID_COLUMNS, METRICS, SUFFIXES

REPO = Path(__file__).resolve().parents[1]
METRICS_DOC = REPO / "docs" / "metrics.md"
CFG = {"bootstrap": 20}

_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def heading_names(text: str) -> set[str]:
    """The backticked names in the Markdown headings of ``text`` (fenced code blocks skipped)."""
    names, fence = set(), None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)[0]
            fence = None if fence == mark else (fence or mark)
            continue
        if fence:
            continue
        h = _HEADING.match(line)
        if h:
            names.update(re.findall(r"`([^`]+)`", h.group(1)))
    return names


def undocumented(columns, names: set[str], suffix_rule: bool) -> list[str]:
    """Columns that no heading names. With ``suffix_rule`` a column ``<metric><suffix>`` (suffix
    ``_std``, ``_ci_lo``, ``_ci_hi``) counts as named when ``<metric>`` is and a heading names
    ``<name><suffix>``."""
    out = []
    for col in columns:
        if col in names:
            continue
        if suffix_rule and any(col.endswith(s) and col[: -len(s)] in names and f"<name>{s}" in names
                               for s in SUFFIXES):
            continue
        out.append(col)
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """table.csv, summary.csv and qc.csv as the workflow writes them, for one constructed model."""
    root = tmp_path_factory.mktemp("results")
    d = root / "mini" / "pythia-a"
    write_model(d, "mini", "pythia-a")
    aggregate_model(d, d / "manifest.json", CFG)
    out = aggregate_suite([d], root / "figures", CFG)
    return {"table": pd.read_csv(d / "table.csv"), "summary": pd.read_csv(out["summary"]),
            "qc": pd.read_csv(out["qc"])}


@pytest.fixture(scope="module")
def names():
    return heading_names(METRICS_DOC.read_text())


def test_the_constructed_table_has_every_metric(outputs):
    cols = list(outputs["table"].columns)
    assert cols[: len(ID_COLUMNS)] == list(ID_COLUMNS)
    assert {m + s for m in METRICS for s in ("",) + SUFFIXES} <= set(cols)


def test_every_table_column_has_a_heading(outputs, names):
    assert undocumented(outputs["table"].columns, names, suffix_rule=True) == []
    assert undocumented(METRICS, names, suffix_rule=False) == []  # each metric by name


def test_every_summary_column_has_a_heading(outputs, names):
    assert undocumented(outputs["summary"].columns, names, suffix_rule=False) == []


def test_every_qc_column_has_a_heading(outputs, names):
    assert undocumented(outputs["qc"].columns, names, suffix_rule=False) == []


def test_a_removed_heading_is_caught(outputs):
    """The check fails when a column's heading is dropped from the document."""
    text = METRICS_DOC.read_text()
    for column, suffix_rule, key in (("icl_score", True, "table"), ("peak_er_bias", False, "summary")):
        lines = [ln for ln in text.splitlines() if not (ln.startswith("#") and f"`{column}`" in ln)]
        assert len(lines) < len(text.splitlines()), column
        assert column in undocumented(outputs[key].columns, heading_names("\n".join(lines)), suffix_rule)
    no_suffix = "\n".join(ln for ln in text.splitlines() if not (ln.startswith("#") and "`<name>_std`" in ln))
    assert "error_reduction_std" in undocumented(outputs["table"].columns, heading_names(no_suffix), True)


def test_heading_names_skip_code_blocks():
    text = "# Title `a`\n```\n# not a heading `b`\n```\n## `c`, `d` (note)\ntext `e`\n"
    assert heading_names(text) == {"a", "c", "d"}


_NOT_PROJECT = {".git", ".venv", "results", "resources", "logs", ".snakemake", "__pycache__"}


def _repository_files() -> list[Path]:
    """The project's files: git's list (tracked and untracked-not-ignored), or, outside a git
    checkout, every file below the repository but the build and output folders."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return [p for p in REPO.rglob("*") if p.is_file()
                and not _NOT_PROJECT & set(p.relative_to(REPO).parts) and ".egg-info" not in str(p)]
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    return [REPO / p for p in listed if p and (REPO / p).is_file()]


def test_nothing_points_outside_the_repository():
    """No file refers to the definitions that once lived outside the repository (they are in docs/)."""
    patterns = ("shared" + "/spec", "../" + "shared/")
    hits = []
    for path in _repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(p in line for p in patterns):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == []


def test_docs_links_resolve():
    """Relative links in README.md and docs/*.md point at files that exist."""
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"^[a-z]+://", target):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []
