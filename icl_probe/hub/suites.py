"""Checkpoint suites: repos, branch naming schemes, steps and tokens.

Facts in docs/metrics.md, "Checkpoint suites". Pythia's schedule is computed; OLMo-2's
branch names are never computed (T is rounded and labels have been wrong): they are
listed from the Hub (or a recorded list) and parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, NamedTuple

PYTHIA_TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens
PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
PYTHIA_DEDUPED_SIZES = ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")
PYTHIA_FINAL_STEP = 143_000

OLMO2_REPOS = {
    "1b": "allenai/OLMo-2-0425-1B",
    "7b": "allenai/OLMo-2-1124-7B",
    "13b": "allenai/OLMo-2-1124-13B",
    "32b": "allenai/OLMo-2-0325-32B",
}
OLMO2_TOKENS_PER_STEP = {"1b": 2_097_152, "7b": 4_194_304, "13b": 8_388_608}

_STEP_RE = re.compile(r"^step(\d+)$")
# stage1-step1000-tokens3B, stage2-ingredient2-step11931-tokens50B, stage1-step200-tokens0.000410B,
# and OLMo-2-1124-7B's earliest stage-1 branches, which have no stage prefix: step150-tokens1B
_STAGED_RE = re.compile(r"^(?:stage(\d)-(?:ingredient(\d+)-)?)?step(\d+)-tokens(\d+(?:\.\d+)?)B$")


class Branch(NamedTuple):
    """A checkpoint branch name, parsed: ``stage`` and ``ingredient`` are None for ``step{N}``
    names (Pythia); a staged name without prefix is stage 1; ``ingredient`` is the stage-2 run."""

    step: int
    tokens: int | None
    stage: int | None
    ingredient: int | None


def pythia_revisions() -> list[str]:
    """The 154 Pythia branches in step order: step0, 1, 2, 4, ..., 512, then 1000..143000 by 1000."""
    early = [0] + [2**k for k in range(10)]  # 0, 1, 2, ..., 512
    return [f"step{s}" for s in early + list(range(1000, PYTHIA_FINAL_STEP + 1, 1000))]


def pythia_repo_id(size: str, deduped: bool = False) -> str:
    sizes = PYTHIA_DEDUPED_SIZES if deduped else PYTHIA_SIZES
    if size not in sizes:
        raise ValueError(f"unknown Pythia size {size!r}{' (deduped)' if deduped else ''}; known: {', '.join(sizes)}")
    return f"EleutherAI/pythia-{size}{'-deduped' if deduped else ''}"


def parse_branch(name: str) -> Branch:
    """The :class:`Branch` of a checkpoint branch name.

    ``step{N}`` -> ``(N, None, None, None)``: tokens come from the suite's tokens per step.
    ``[stage{S}-[ingredient{k}-]]step{N}-tokens{T}B`` -> ``(N, round(T * 1e9), S, k)``, S = 1
    without the prefix (OLMo-2-1124-7B's first branches); T may be a decimal (``tokens0.000410B``
    -> 410,000 tokens) or rounded, as the Hub writes it. Anything else (``main``, tags) raises
    ``ValueError``: it is not a checkpoint of the schedule.
    """
    m = _STEP_RE.fullmatch(name)
    if m:
        return Branch(int(m.group(1)), None, None, None)
    m = _STAGED_RE.fullmatch(name)
    if m:
        stage, ingredient, step, tokens_b = m.groups()
        return Branch(int(step), _billions_to_tokens(tokens_b), int(stage) if stage else 1,
                      int(ingredient) if ingredient else None)
    raise ValueError(
        f"{name!r} is not a checkpoint revision: expected 'step<N>' or "
        "'[stage<S>-[ingredient<k>-]]step<N>-tokens<T>B'"
    )


def parse_revision(name: str) -> tuple[int, int | None, int | None]:
    """``(step, tokens, stage)`` of a checkpoint branch name (:func:`parse_branch`)."""
    b = parse_branch(name)
    return b.step, b.tokens, b.stage


def _billions_to_tokens(text: str) -> int:
    """'0.000410' -> 410000, exactly (no float rounding)."""
    whole, _, frac = text.partition(".")
    frac = (frac + "0" * 9)[:9]
    return int(whole) * 10**9 + int(frac)


def is_checkpoint(name: str) -> bool:
    try:
        parse_revision(name)
    except ValueError:
        return False
    return True


def checkpoint_revisions(branches: Iterable[str], stage: int | None = 1,
                         ingredient: int | None = None) -> list[str]:
    """The branches that are checkpoints of one trajectory, in (step, name) order.

    Staged names (OLMo-2) are kept only for ``stage`` (``None`` keeps every stage), with and
    without the ``stage1-`` prefix; with ``ingredient``, only that stage-2 ingredient run's
    (each is its own trajectory, its steps restart). ``step{N}`` names have no stage and are
    always kept. ``main`` and other names are dropped.
    """
    keep = []
    for b in set(branches):
        try:
            br = parse_branch(b)
        except ValueError:
            continue
        if br.stage is None or stage is None or (br.stage == stage and (ingredient is None
                                                                       or br.ingredient == ingredient)):
            keep.append((br.step, b))
    return [b for _, b in sorted(keep)]


@dataclass(frozen=True)
class SuiteInfo:
    """What the pipeline knows about a suite before asking the Hub."""

    name: str
    tokens_per_step: dict[str, int] = field(default_factory=dict)  # repo_id -> tokens per step
    default_stage: int | None = None
    default_tokens_per_step: int | None = None  # for repos of the family not in the table
    # Documented alias pairs (original, alias): identical weights by design, not flagged as duplicates.
    aliases: tuple[tuple[str, str], ...] = ()


def _pythia_tokens() -> dict[str, int]:
    ids = [pythia_repo_id(s) for s in PYTHIA_SIZES] + [pythia_repo_id(s, True) for s in PYTHIA_DEDUPED_SIZES]
    return {r: PYTHIA_TOKENS_PER_STEP for r in ids}


SUITES = {
    "pythia": SuiteInfo("pythia", _pythia_tokens(), None, PYTHIA_TOKENS_PER_STEP, (("step0", "step1"),)),
    "olmo2": SuiteInfo("olmo2", {OLMO2_REPOS[k]: v for k, v in OLMO2_TOKENS_PER_STEP.items()}, 1, None, ()),
}


def suite_info(suite: str, repo_id: str | None = None) -> SuiteInfo:
    """Known suite, else (local / mini suites) one inferred from the repo id's family."""
    if suite in SUITES:
        return SUITES[suite]
    if repo_id and repo_id.startswith("EleutherAI/pythia"):
        return SUITES["pythia"]
    if repo_id and repo_id.startswith("allenai/OLMo-2"):
        return SUITES["olmo2"]
    return SuiteInfo(suite, {}, 1, None, ())


def default_tokens_per_step(suite: str, repo_id: str) -> int | None:
    info = suite_info(suite, repo_id)
    return info.tokens_per_step.get(repo_id, info.default_tokens_per_step)


def tokens_for(revision: str, tokens_per_step: int | None) -> int | None:
    """Tokens seen at ``revision``: the name's T if it has one, else step x tokens_per_step."""
    step, tokens, _ = parse_revision(revision)
    if tokens is not None:
        return tokens
    return None if tokens_per_step is None else step * tokens_per_step


# --- recorded branch lists (DAG building without network) ---------------------------------

def branch_list_name(repo_id: str) -> str:
    """``EleutherAI/pythia-160m`` -> ``EleutherAI__pythia-160m.txt``."""
    return repo_id.replace("/", "__") + ".txt"


def read_branch_list(source: str | Path) -> list[str]:
    """Branch names of a recorded list: one a line, ``#`` comments and blank lines skipped.

    ``source`` is a path to a file, or a repo id whose list ships in ``icl_probe/data/branches/``.
    """
    path = Path(source)
    if not path.is_file():
        pkg = resources.files("icl_probe").joinpath("data", "branches", branch_list_name(str(source)))
        if not pkg.is_file():
            raise FileNotFoundError(
                f"no recorded branch list for {source!r} (looked for a file, and for "
                f"icl_probe/data/branches/{branch_list_name(str(source))})"
            )
        text = pkg.read_text()
    else:
        text = path.read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
