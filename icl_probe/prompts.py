"""Deterministic prompt sets: one prompt file per probe and model, made once from the seeds and settings.

``results/{suite}/{model}/prompts/{probe}.json`` holds one probe's token-id
sequences for every seed, so all checkpoints of a model read the same prompts, and
enabling another probe leaves the existing prompt files (and results) as they are.
Each probe draws from its own RNG stream (``Probe.stream``), never from its place in
a list. ``prompts_sha256`` (over a canonical serialisation) is recorded in every
result. Prompts are token ids, written without special tokens (no BOS).

Layout (the header keys, then the probe's own block, e.g. gd_readout's)::

    {"schema_version": 1, "probe": "gd_readout",
     "settings": {"seeds": [42, 7, 123], "gd_readout": {...}},
     "tokenizer": {"class": ..., "vocab_size": ..., "pad_id": ...},
     "source": {"repo_id": ..., "revision": ...},          # not hashed
     "prompts_sha256": "...",                              # not hashed
     "digit_ids": [10 ids], "digit_strings": [10],
     "sets": [{"seed": 42, "prompts": [{"input_ids": [...], "text": "...",
               "a": 1, "b": 3, "x": [k], "y": [k], "x_q": 2, "y_star": 5}]}]}

The blocks of the other probes: induction ``{"block_len": m, "sets": [{"seed", "sequences": [[2m ids]]}]}``,
attention_sinks ``{"prompt_set", "sets": [{"seed", "sequences": [[T ids]]}]}``, associative_recall
``{"sets": [{"seed", "items", "prompts": [{"input_ids": [2n+1 ids], "target": id}]}]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from icl_probe import SCHEMA_VERSION
from icl_probe.io import read_json, write_json

HEADER = ("schema_version", "probe", "settings", "tokenizer", "source", "prompts_sha256")
_WORD = re.compile(r"^ ?[A-Za-z0-9]+$")
_MIN_SPACED = 512  # use only space-prefixed words when a tokenizer has this many


class PromptError(ValueError):
    """A prompt set that cannot be built or run as configured."""


class DigitTokenError(PromptError):
    """A GD-readout digit answer is not exactly one token."""


class PromptTooLongError(PromptError):
    """A prompt is longer than the model's context."""


def _probe(name: str, settings: dict):
    from icl_probe.probes.registry import external_of, get

    return get(name, external_of(settings))


def prompt_settings(settings: dict, probe: str) -> dict:
    """The part of the ``probes`` settings that determines ``probe``'s prompts: the seeds and its section."""
    p = _probe(probe, settings)
    return {"seeds": [int(s) for s in settings["seeds"]], probe: p.with_defaults(settings.get(probe))}


# --------------------------------------------------------------------- vocabulary
def ordinary_token_ids(tokenizer, vocab_limit: int | None = None) -> list[int]:
    """Ids of plain word tokens: not special or added, decoding to ``[ ]?[A-Za-z0-9]+``.

    When the tokenizer has at least 512 space-prefixed words (BPE vocabularies),
    only those are kept, so a sequence of them reads as words separated by spaces.
    Sorted ascending; deterministic for a given tokenizer.
    """
    n = len(tokenizer) if vocab_limit is None else min(len(tokenizer), int(vocab_limit))
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    ids = [i for i in range(n) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids])
    words = [(i, t) for i, t in zip(ids, texts) if _WORD.match(t)]
    spaced = [i for i, t in words if t.startswith(" ")]
    return spaced if len(spaced) >= _MIN_SPACED else [i for i, _ in words]


# --------------------------------------------------------------------- the prompt file
def prompt_sources(settings: dict) -> list[str]:
    """The probes whose prompt files the enabled probes read (a probe may borrow another's), in order."""
    from icl_probe.probes.registry import external_of, registry

    probes = registry(external_of(settings))
    out: list[str] = []
    for name in settings.get("enabled", list(probes)):
        src = _probe(name, settings).prompt_source
        if src not in out:
            out.append(src)
    return out


def build_probe_prompts(tokenizer, probe: str, settings: dict, *, context_length: int | None = None,
                        vocab_limit: int | None = None, source: dict | None = None) -> dict:
    """The prompt file of one probe (every seed): the header and the probe's block.

    ``settings`` is the config's ``probes`` section. ``context_length`` (the model's
    ``max_position_embeddings``) is checked with :func:`check_context`; ``vocab_limit``
    (the model's ``vocab_size``) bounds the ordinary token ids.
    """
    from icl_probe.probes.base import PromptContext

    p = _probe(probe, settings)
    if p.build_prompts is None:
        raise PromptError(f"{probe} reads the prompts of {p.prompt_source}; it has no prompt file of its own")
    ps = prompt_settings(settings, probe)
    ctx = PromptContext(tokenizer=tokenizer, settings=ps[probe], seeds=ps["seeds"], stream=p.stream,
                        vocab_limit=vocab_limit)
    block = p.build_prompts(ctx)
    clash = sorted(set(block) & set(HEADER))
    if clash or "sets" not in block:
        raise PromptError(f"{probe}: build_prompts must return a dict with 'sets' and none of the keys "
                          f"{', '.join(HEADER)} (got {sorted(block)})")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "probe": probe, "settings": ps,
                           "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                                         "pad_id": int(pad) if pad is not None else 0},
                           **block}
    if source is not None:
        out["source"] = dict(source)
    if context_length is not None:
        check_context(out, context_length)
    out["prompts_sha256"] = prompts_sha256(out)
    return out


def build_prompts(tokenizer, settings: dict, **kwargs) -> dict[str, dict]:
    """Every prompt file the enabled probes read, by probe name (:func:`build_probe_prompts`)."""
    return {name: build_probe_prompts(tokenizer, name, settings, **kwargs) for name in prompt_sources(settings)}


def sequences_of(prompts: dict, probe: str | None = None) -> list[list[list[int]]]:
    """Token-id sequences of a prompt file (``prompts``), one list per seed.

    ``prompts`` may also be a mapping of probe name to prompt file, with ``probe`` naming one.
    """
    file = prompts[probe] if probe is not None and "probe" not in prompts else prompts
    return _probe(file["probe"], {}).sequences(file)


def check_context(prompts: dict, context_length: int) -> None:
    """:class:`PromptTooLongError` naming the probe, the length and the limit if a prompt is too long.

    ``prompts``: one prompt file, or a mapping of probe name to prompt file.
    """
    files = [prompts] if "probe" in prompts else list(prompts.values())
    for file in files:
        probe = file["probe"]
        longest = max((len(s) for seqs in sequences_of(file) for s in seqs), default=0)
        if longest > context_length:
            raise PromptTooLongError(
                f"{probe}: a prompt is {longest} tokens long, longer than the model's context "
                f"(max_position_embeddings = {context_length}); shorten the {probe} settings"
            )


def canonical_json(prompts: dict) -> str:
    """The hashed serialisation: sorted keys, no whitespace, without ``source`` and the hash itself."""
    body = {k: v for k, v in prompts.items() if k not in ("source", "prompts_sha256")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def prompts_sha256(prompts: dict) -> str:
    return hashlib.sha256(canonical_json(prompts).encode()).hexdigest()


def write_prompts(path: str | os.PathLike, prompts: dict):
    """Atomically write a prompt file (its ``prompts_sha256`` is refreshed first)."""
    prompts = dict(prompts)
    prompts["prompts_sha256"] = prompts_sha256(prompts)
    return write_json(path, prompts)


def load_prompts(path: str | os.PathLike) -> dict:
    """Read one probe's prompt file and check its hash."""
    try:
        prompts = read_json(path)
    except ValueError as err:
        raise PromptError(f"{path} is not valid JSON ({err}): the prompt file is damaged; delete it and rerun "
                          "(the workflow's prompts job writes it again)") from None
    if not isinstance(prompts, dict) or "probe" not in prompts:
        raise PromptError(f"{path} is not a prompt file of one probe (no JSON object with 'probe'; files "
                          "made before icl-probe had one prompt file per probe are not read); delete it and rerun")
    stored = prompts.get("prompts_sha256")
    if stored is not None and stored != prompts_sha256(prompts):
        raise PromptError(f"{path}: prompts_sha256 does not match the content (file edited or truncated?)")
    prompts["prompts_sha256"] = prompts_sha256(prompts)
    return prompts
