"""What a probe is: one :class:`Probe` description per probe module (see docs/probes.md).

A probe module defines its prompt builder, its model pass(es) and its pure metric
function, and describes them in a module-level ``PROBE = Probe(...)``. The registry
(:mod:`icl_probe.probes.registry`) collects the descriptions; config validation,
prompt files, the runner, the table columns and the figures read them from there.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np


class ProbeDefinitionError(TypeError):
    """A probe module that does not satisfy the protocol, or a name that collides."""

    user_facing = True


@dataclass(frozen=True)
class Pass:
    """One pass of a prompt set through the model: what a probe needs from the model.

    ``run(lens, block, batch_size=, pad_id=)`` returns one dict of arrays per seed.
    Probes naming the same pass (same ``name``) share one run in a checkpoint job.
    ``prompts`` names the probe whose prompt set is passed (usually the probe itself).
    ``layers`` ("all", "final" or "none"), ``positions`` (in words), ``attentions`` and
    ``gradients`` describe what the pass captures.
    """

    name: str
    run: Callable[..., list[dict]]
    prompts: str
    layers: str = "all"
    positions: str = "all"
    attentions: bool = False
    gradients: bool = False


@dataclass
class PromptContext:
    """What a prompt builder gets: the tokenizer, the probe's settings, the seeds and its RNG stream."""

    tokenizer: Any
    settings: dict
    seeds: list[int]
    stream: int
    vocab_limit: int | None = None
    _ordinary: list[int] | None = field(default=None, repr=False)

    def rng(self, seed: int) -> np.random.Generator:
        """The probe's own generator for ``seed`` (independent of every other probe's)."""
        return np.random.default_rng([int(seed), int(self.stream)])

    def ordinary(self) -> list[int]:
        """Plain word token ids of the tokenizer (:func:`icl_probe.prompts.ordinary_token_ids`)."""
        if self._ordinary is None:
            from icl_probe.prompts import ordinary_token_ids

            self._ordinary = ordinary_token_ids(self.tokenizer, self.vocab_limit)
        return self._ordinary

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def sequences_in_sets(block: dict) -> list[list[list[int]]]:
    """Token-id sequences per seed of a block whose sets hold ``sequences``."""
    return [s["sequences"] for s in block["sets"]]


def prompt_input_ids(block: dict) -> list[list[list[int]]]:
    """Token-id sequences per seed of a block whose sets hold ``prompts`` with ``input_ids``."""
    return [[p["input_ids"] for p in s["prompts"]] for s in block["sets"]]


def _no_fixed(settings: dict) -> dict:
    return {}


@dataclass(frozen=True)
class Probe:
    """The description of one probe (named fields only).

    name            probe name: result file ``{name}.json``, config section ``probes.{name}``
    summary         one line for docs and errors
    settings        JSON-schema ``properties`` of ``probes.{name}`` (each with a ``default``)
    build_prompts   ``f(PromptContext) -> block`` with ``block["sets"] = [{"seed": s, ...}, ...]``;
                    None when the probe reads another probe's prompt set (see ``passes``)
    sequences       ``f(block) -> [seed][sequence][token id]`` (context and vocabulary checks)
    passes          the model passes it needs (:class:`Pass`), run once per job however many
                    probes need them
    metric          pure ``f(**arrays of one seed, **fixed) -> {name: value}``
    batched         True when ``metric`` also takes a leading resample axis ``[B, ...]`` on every
                    input with a prompt axis (the others as they are) and then returns each scalar
                    as ``[B]``: the bootstrap then evaluates its resamples in chunks, not one by one
    prompt_axes     the prompt axis of each metric input (None: not resampled by the bootstrap)
    scalars, per_layer, per_head
                    the outputs: scalars (table columns, with _std and _ci), per-layer
                    vectors (layers table), per-head matrices
    per_prompt      optional ``f(**arrays, **fixed) -> {name: (num [P], den [P] or None)}``
    fixed           ``f(probe settings) -> metric keyword arguments`` (thresholds)
    prompt_length   optional ``f(probe settings) -> (setting key, longest prompt in tokens)``
    check_settings  optional ``f(probe settings) -> problem or None`` (what the schema cannot say)
    check_tokenizer optional ``f(block, tokenizer) -> problem or None`` (prompt file vs checkpoint)
    rng_stream      the probe's RNG stream; default derived from its name
    """

    name: str
    summary: str
    passes: tuple[Pass, ...]
    metric: Callable[..., dict]
    scalars: tuple[str, ...]
    prompt_axes: Mapping[str, int | None]
    settings: Mapping[str, dict] = field(default_factory=dict)
    build_prompts: Callable[[PromptContext], dict] | None = None
    sequences: Callable[[dict], list] = sequences_in_sets
    per_layer: tuple[str, ...] = ()
    per_head: tuple[str, ...] = ()
    per_prompt: Callable[..., dict] | None = None
    fixed: Callable[[dict], dict] = _no_fixed
    prompt_length: Callable[[dict], tuple[str, int]] | None = None
    check_settings: Callable[[dict], str | None] | None = None
    check_tokenizer: Callable[[dict, Any], str | None] | None = None
    rng_stream: int | None = None
    batched: bool = False

    @property
    def stream(self) -> int:
        """The RNG stream of the probe's prompts: ``rng_stream`` or a checksum of its name."""
        return self.rng_stream if self.rng_stream is not None else zlib.crc32(self.name.encode()) + 1000

    @property
    def prompt_source(self) -> str:
        """The probe whose prompt file this probe reads (itself unless it borrows another's)."""
        return self.name if self.build_prompts is not None else self.passes[0].prompts

    def schema(self) -> dict:
        """The JSON-schema fragment of ``probes.{name}``."""
        return {"type": "object", "additionalProperties": False, "default": {},
                "properties": dict(self.settings)}

    def with_defaults(self, given: Mapping | None) -> dict:
        """``given`` settings with every missing setting at its default."""
        out = {k: v["default"] for k, v in self.settings.items() if "default" in v}
        out.update(dict(given or {}))
        return out


def check_probe(probe: Any, where: str) -> Probe:
    """``probe`` if it satisfies the protocol, else :class:`ProbeDefinitionError` naming ``where`` and the fix."""
    if not isinstance(probe, Probe):
        raise ProbeDefinitionError(
            f"{where}: PROBE is a {type(probe).__name__}, not an icl_probe.probes.base.Probe; define "
            "PROBE = Probe(name=..., passes=..., metric=..., scalars=..., prompt_axes=...) (see docs/probes.md)")
    problems = []
    if not probe.name.isidentifier():
        problems.append(f"name {probe.name!r} is not a Python identifier")
    if not probe.passes or not all(isinstance(p, Pass) for p in probe.passes):
        problems.append("passes must be a non-empty tuple of icl_probe.probes.base.Pass")
    for attr in ("metric",):
        if not callable(getattr(probe, attr)):
            problems.append(f"{attr} is not callable")
    for attr in ("build_prompts", "per_prompt", "prompt_length", "check_settings", "check_tokenizer"):
        if getattr(probe, attr) is not None and not callable(getattr(probe, attr)):
            problems.append(f"{attr} is not callable")
    if not probe.scalars or not all(isinstance(s, str) for s in probe.scalars):
        problems.append("scalars must name at least one output")
    if probe.build_prompts is None and probe.passes and all(isinstance(p, Pass) for p in probe.passes) \
            and any(p.prompts == probe.name for p in probe.passes):
        problems.append("a pass reads the probe's own prompts, but build_prompts is None")
    for key, spec in probe.settings.items():
        if not isinstance(spec, dict) or "default" not in spec:
            problems.append(f"setting {key!r} needs a JSON-schema dict with a 'default'")
    if problems:
        raise ProbeDefinitionError(f"{where}: probe {probe.name!r} is not valid: " + "; ".join(problems)
                                   + " (see docs/probes.md)")
    return probe


def concat_sets(block: dict, key: str) -> tuple[list, list[int]]:
    """All seeds' items of ``block["sets"][*][key]`` in one list (one pass) and the seed sizes."""
    sets = block["sets"]
    return [x for s in sets for x in s[key]], [len(s[key]) for s in sets]


def split_seeds(arr: np.ndarray, sizes: Sequence[int], axis: int) -> list[np.ndarray]:
    """``arr`` cut along ``axis`` into the seeds' parts (inverse of :func:`concat_sets`)."""
    return np.split(arr, np.cumsum(sizes)[:-1], axis=axis)


def equal_lengths(seqs: list[list[int]], probe: str) -> int:
    """The one length of ``seqs``; a PromptError naming ``probe`` if they differ."""
    from icl_probe.prompts import PromptError

    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise PromptError(f"{probe}: sequences must all have one length, got {sorted(lengths)}")
    return lengths.pop()
