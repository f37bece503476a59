"""Deterministic prompt sets, made once per model from the seeds and the ``probes`` settings.

One prompt file per model (``results/{suite}/{model}/prompts.json``) holds every
probe's token-id sequences for every seed, so all checkpoints of a model read the
same prompts; ``prompts_sha256`` (over a canonical serialisation) is recorded in
every result. Prompts are token ids, written without special tokens (no BOS).

Layout::

    {"schema_version": 1, "settings": {...}, "tokenizer": {...},
     "source": {"repo_id": ..., "revision": ...},          # not hashed
     "prompts_sha256": "...",                              # not hashed
     "gd_readout": {"digit_ids": [10], "digit_strings": [10],
                    "sets": [{"seed": 42, "prompts": [{"input_ids": [...], "text": "...",
                              "a": 1, "b": 3, "x": [k], "y": [k], "x_q": 2, "y_star": 5}]}]},
     "induction": {"block_len": m, "sets": [{"seed": 42, "sequences": [[2m ids], ...]}]},
     "attention_sinks": {"prompt_set": "random", "sets": [{"seed": 42, "sequences": [[T ids]]}]},
     "associative_recall": {"sets": [{"seed": 42, "items": [...],
                            "prompts": [{"input_ids": [2n+1 ids], "target": id}]}]}}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Sequence

import numpy as np

from icl_probe import SCHEMA_VERSION
from icl_probe.io import read_json, write_json

PROBES = ("gd_readout", "induction", "attention_sinks", "associative_recall")
_STREAM = {name: i + 1 for i, name in enumerate(PROBES)}  # separate RNG stream per probe
_WORD = re.compile(r"^ ?[A-Za-z0-9]+$")
_MIN_SPACED = 512  # use only space-prefixed words when a tokenizer has this many


class PromptError(ValueError):
    """A prompt set that cannot be built or run as configured."""


class DigitTokenError(PromptError):
    """A GD-readout digit answer is not exactly one token."""


class PromptTooLongError(PromptError):
    """A prompt is longer than the model's context."""


def _rng(seed: int, probe: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[probe]])


def prompt_settings(settings: dict) -> dict:
    """The part of the ``probes`` settings that determines the prompts."""
    enabled = list(settings.get("enabled", PROBES))
    out: dict[str, Any] = {"seeds": [int(s) for s in settings["seeds"]], "enabled": enabled}
    for name in enabled:
        if name not in PROBES:
            raise PromptError(f"unknown probe {name!r}; known probes: {', '.join(PROBES)}")
        out[name] = dict(settings.get(name, {}))
    return out


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


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def digit_answers(gd: dict) -> list[str]:
    """The ten answer strings d = 0..9 as they follow a query (e.g. ``" 5"``)."""
    pair, query = gd.get("pair_format", "{x} -> {y}"), gd.get("query_format", "{x} ->")
    out = []
    for d in range(10):
        full, q = pair.format(x=0, y=d), query.format(x=0)
        if not full.startswith(q):
            raise PromptError(f"gd_readout: pair_format {pair!r} does not start with query_format {query!r}")
        out.append(full[len(q):])
    return out


def digit_token_ids(tokenizer, gd: dict) -> tuple[list[int], list[str]]:
    """Token id of each digit answer 0..9; :class:`DigitTokenError` if one is not one token."""
    strings = digit_answers(gd)
    ids = []
    for s in strings:
        toks = _encode(tokenizer, s)
        if len(toks) != 1:
            raise DigitTokenError(
                f"gd_readout: the digit answer {s!r} is {len(toks)} tokens {toks} in this tokenizer, "
                "not exactly one; change probes.gd_readout.pair_format / query_format"
            )
        ids.append(toks[0])
    if len(set(ids)) != 10:
        raise DigitTokenError(f"gd_readout: the digit answers {strings!r} do not map to ten distinct tokens: {ids}")
    return ids, strings


# --------------------------------------------------------------------- prompt sets
def gd_problems(seed: int, gd: dict) -> list[dict]:
    """GD-readout problems y = a*x + b (text only; no tokenizer).

    a in {1, 2}; b uniform in {0 .. 9 - 4a}; k in-context x and the query x_q
    uniform in {0..4}; y* = a*x_q + b. Deterministic in ``seed``.
    """
    rng = _rng(seed, "gd_readout")
    k, n = int(gd.get("k", 5)), int(gd.get("n_prompts", 80))
    pair, query = gd.get("pair_format", "{x} -> {y}"), gd.get("query_format", "{x} ->")
    sep = gd.get("separator", "\n")
    out = []
    for _ in range(n):
        a = int(rng.choice([1, 2]))
        b = int(rng.integers(0, 9 - 4 * a + 1))
        x = [int(v) for v in rng.integers(0, 5, size=k)]
        x_q = int(rng.integers(0, 5))
        y = [a * v + b for v in x]
        text = sep.join([pair.format(x=xi, y=yi) for xi, yi in zip(x, y)] + [query.format(x=x_q)])
        out.append({"text": text, "a": a, "b": b, "x": x, "y": y, "x_q": x_q, "y_star": a * x_q + b})
    return out


def induction_sequences(seed: int, ordinary: Sequence[int], block_len: int, n_sequences: int) -> list[list[int]]:
    """``n_sequences`` blocks of ``block_len`` distinct ordinary tokens, each repeated once."""
    if len(ordinary) < block_len:
        raise PromptError(f"induction: block_len {block_len} exceeds the {len(ordinary)} ordinary tokens")
    rng = _rng(seed, "induction")
    pool = np.asarray(ordinary)
    out = []
    for _ in range(int(n_sequences)):
        block = [int(t) for t in rng.choice(pool, size=int(block_len), replace=False)]
        out.append(block + block)
    return out


def sink_sequences(seed: int, ordinary: Sequence[int], seq_len: int, n_sequences: int,
                   prompt_set: str = "random") -> list[list[int]]:
    """Attention-sink sequences of ``seq_len`` ordinary tokens (no BOS).

    ``prompt_set="random"``: tokens drawn uniformly with replacement;
    ``"pattern"``: the completion prompt [A B A B ... A] with random A != B.
    """
    rng = _rng(seed, "attention_sinks")
    pool = np.asarray(ordinary)
    out = []
    for _ in range(int(n_sequences)):
        if prompt_set == "random":
            out.append([int(t) for t in rng.choice(pool, size=int(seq_len), replace=True)])
        elif prompt_set == "pattern":
            a, b = (int(t) for t in rng.choice(pool, size=2, replace=False))
            out.append([a if i % 2 == 0 else b for i in range(int(seq_len))])
        else:
            raise PromptError(f"attention_sinks: prompt_set must be 'random' or 'pattern', got {prompt_set!r}")
    return out


def recall_prompts(seed: int, ordinary: Sequence[int], n_items: int, n_pairs: int,
                   n_prompts: int) -> dict:
    """Associative-recall prompts ``k1 v1 ... kn vn kq`` over ``n_items`` single-token items.

    Keys and values of a prompt are 2*n_pairs distinct items; kq is a uniformly
    drawn key and the target its value.
    """
    if len(ordinary) < n_items:
        raise PromptError(f"associative_recall: n_items {n_items} exceeds the {len(ordinary)} ordinary tokens")
    if 2 * n_pairs > n_items:
        raise PromptError(f"associative_recall: {n_pairs} pairs need {2 * n_pairs} distinct items, have {n_items}")
    rng = _rng(seed, "associative_recall")
    items = [int(t) for t in rng.choice(np.asarray(ordinary), size=int(n_items), replace=False)]
    prompts = []
    for _ in range(int(n_prompts)):
        chosen = rng.choice(int(n_items), size=2 * int(n_pairs), replace=False)
        keys, values = [items[i] for i in chosen[:n_pairs]], [items[i] for i in chosen[n_pairs:]]
        q = int(rng.integers(0, n_pairs))
        ids = [t for kv in zip(keys, values) for t in kv] + [keys[q]]
        prompts.append({"input_ids": ids, "target": values[q]})
    return {"items": items, "prompts": prompts}


# --------------------------------------------------------------------- the prompt file
def build_prompts(tokenizer, settings: dict, *, context_length: int | None = None,
                  vocab_limit: int | None = None, source: dict | None = None) -> dict:
    """Every enabled probe's prompts for every seed (the content of ``prompts.json``).

    ``settings`` is the config's ``probes`` section. ``context_length`` (the model's
    ``max_position_embeddings``) is checked with :func:`check_context`;
    ``vocab_limit`` (the model's ``vocab_size``) bounds the ordinary token ids.
    """
    ps = prompt_settings(settings)
    seeds = ps["seeds"]
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "settings": ps}
    ordinary: list[int] | None = None

    def pool() -> list[int]:
        nonlocal ordinary
        if ordinary is None:
            ordinary = ordinary_token_ids(tokenizer, vocab_limit)
        return ordinary

    if "gd_readout" in ps["enabled"]:
        gd = ps["gd_readout"]
        ids, strings = digit_token_ids(tokenizer, gd)
        sets = []
        for seed in seeds:
            probs = gd_problems(seed, gd)
            for p in probs:
                p["input_ids"] = _encode(tokenizer, p["text"])
                with_answer = _encode(tokenizer, p["text"] + strings[p["y_star"]])
                if with_answer != p["input_ids"] + [ids[p["y_star"]]]:
                    raise DigitTokenError(
                        f"gd_readout: the answer {strings[p['y_star']]!r} does not tokenize as one token "
                        f"after the prompt {p['text']!r} ({with_answer} vs {p['input_ids']} + [{ids[p['y_star']]}])"
                    )
            sets.append({"seed": seed, "prompts": probs})
        out["gd_readout"] = {"digit_ids": ids, "digit_strings": strings, "sets": sets}
    if "induction" in ps["enabled"]:
        ind = ps["induction"]
        m, n = int(ind.get("block_len", 32)), int(ind.get("n_sequences", 48))
        out["induction"] = {"block_len": m, "sets": [
            {"seed": s, "sequences": induction_sequences(s, pool(), m, n)} for s in seeds]}
    if "attention_sinks" in ps["enabled"]:
        sk = ps["attention_sinks"]
        kind = sk.get("prompt_set", "random")
        out["attention_sinks"] = {"prompt_set": kind, "sets": [
            {"seed": s, "sequences": sink_sequences(s, pool(), int(sk.get("seq_len", 64)),
                                                    int(sk.get("n_sequences", 100)), kind)} for s in seeds]}
    if "associative_recall" in ps["enabled"]:
        ar = ps["associative_recall"]
        out["associative_recall"] = {"sets": [
            {"seed": s, **recall_prompts(s, pool(), int(ar.get("n_items", 128)), int(ar.get("n_pairs", 20)),
                                         int(ar.get("n_prompts", 64)))} for s in seeds]}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out["tokenizer"] = {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                        "pad_id": int(pad) if pad is not None else 0}
    if source is not None:
        out["source"] = dict(source)
    if context_length is not None:
        check_context(out, context_length)
    out["prompts_sha256"] = prompts_sha256(out)
    return out


def sequences_of(prompts: dict, probe: str) -> list[list[list[int]]]:
    """Token-id sequences of ``probe``, one list per seed."""
    sets = prompts[probe]["sets"]
    if probe == "gd_readout":
        return [[p["input_ids"] for p in s["prompts"]] for s in sets]
    if probe == "associative_recall":
        return [[p["input_ids"] for p in s["prompts"]] for s in sets]
    return [s["sequences"] for s in sets]


def check_context(prompts: dict, context_length: int) -> None:
    """:class:`PromptTooLongError` naming the probe, the length and the limit if a prompt is too long."""
    for probe in PROBES:
        if probe not in prompts:
            continue
        longest = max((len(s) for seqs in sequences_of(prompts, probe) for s in seqs), default=0)
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
    """Read a prompt file and check its hash."""
    try:
        prompts = read_json(path)
    except ValueError as err:
        raise PromptError(f"{path} is not valid JSON ({err}): the prompt file is damaged; delete it and rerun "
                          "(the workflow's prompts job writes it again)") from None
    if not isinstance(prompts, dict):
        raise PromptError(f"{path} is not a prompt file (no JSON object); delete it and rerun")
    stored = prompts.get("prompts_sha256")
    if stored is not None and stored != prompts_sha256(prompts):
        raise PromptError(f"{path}: prompts_sha256 does not match the content (file edited or truncated?)")
    prompts["prompts_sha256"] = prompts_sha256(prompts)
    return prompts
