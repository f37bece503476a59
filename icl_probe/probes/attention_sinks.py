"""Attention sinks: how much attention lands on the first token, per head and layer.

Pure functions of arrays (see docs/metrics.md, "Attention sinks").
"""

from __future__ import annotations

import math

import numpy as np

from icl_probe.probes.base import Pass, Probe, concat_sets, equal_lengths, split_seeds

SCALARS = ("sink_rate_eps", "late_early_ratio")
PER_LAYER = ("sink_frac",)
PER_HEAD = ("alpha",)
PROMPT_AXES = {"alpha": 2}


def first_token_attention(attn: np.ndarray) -> np.ndarray:
    """alpha per head and sequence: mean over queries t = 1..T-1 of the weight on position 0.

    ``attn [S, H, T, T]`` (one layer) -> ``[H, S]``.
    """
    a = np.asarray(attn)
    return a[:, :, 1:, 0].mean(axis=-1).T


def sink_metrics(alpha: np.ndarray, eps: float = 0.3) -> dict:
    """Every attention-sink row of the spec for one seed.

    alpha ``[L, H, S]``: per layer (block 1..L), head and sequence, the mean over
    t = 1..T-1 of the attention on position 0. Returns alpha ``[L, H]``, sink_frac
    ``[L]``, sink_rate_eps (percent of (layer, head) with alpha > eps) and
    late_early_ratio (mean sink_frac over the last ceil(L/3) layers over the first).
    With a leading resample axis ``[B, L, H, S]`` every value gains it (``Probe.batched``).
    """
    a = np.asarray(alpha, dtype=np.float64).mean(axis=-1)
    sink_frac = a.mean(axis=-1)
    n = math.ceil(a.shape[-2] / 3)
    early = sink_frac[..., :n].mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = sink_frac[..., -n:].mean(axis=-1) / early
    rate = 100.0 * np.mean(a > eps, axis=(-2, -1))
    if a.ndim == 2:
        ratio, rate = float(ratio), float(rate)
    return {
        "alpha": a,
        "sink_frac": sink_frac,
        "sink_rate_eps": rate,
        "late_early_ratio": ratio,
    }


def per_prompt(alpha: np.ndarray, eps: float = 0.3) -> dict:
    """Per-sequence numerator and denominator of late_early_ratio (``eps`` is unused).

    alpha ``[L, H, S]`` as in :func:`sink_metrics`; returns ``{"late_early_ratio": (num [S], den [S])}``:
    num_s / den_s = mean of alpha[:, :, s] over the last / first ceil(L/3) layers and all heads,
    so ``num.sum() / den.sum()`` is the reported ratio.
    """
    a = np.asarray(alpha, dtype=np.float64)
    n = math.ceil(a.shape[0] / 3)
    return {"late_early_ratio": (a[-n:].mean(axis=(0, 1)), a[:n].mean(axis=(0, 1)))}


# --------------------------------------------------------------------- prompts
def sink_sequences(rng: np.random.Generator, ordinary, seq_len: int, n_sequences: int,
                   prompt_set: str = "random") -> list[list[int]]:
    """Attention-sink sequences of ``seq_len`` ordinary tokens (no BOS) drawn from ``rng``.

    ``prompt_set="random"``: tokens drawn uniformly with replacement;
    ``"pattern"``: the completion prompt [A B A B ... A] with random A != B.
    """
    from icl_probe.prompts import PromptError

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


def build_prompts(ctx) -> dict:
    s = ctx.settings
    return {"prompt_set": s["prompt_set"], "sets": [
        {"seed": seed, "sequences": sink_sequences(ctx.rng(seed), ctx.ordinary(), int(s["seq_len"]),
                                                   int(s["n_sequences"]), s["prompt_set"])} for seed in ctx.seeds]}


# --------------------------------------------------------------------- the model pass
def collect(lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``alpha [L, H, S]`` (one eager pass, no hidden states)."""
    import torch

    seqs, sizes = concat_sets(block, "sequences")
    equal_lengths(seqs, "attention_sinks")
    parts = []
    for cap in lens.run(seqs, None, attentions=True, batch_size=batch_size, pad_id=pad_id):
        # first_token_attention on the device: [B, H, T, T] -> [H, B], only that comes back
        parts.append(torch.stack([a[:, :, 1:, 0].float().mean(-1).T for a in cap.attentions]).cpu().numpy())
    alpha = np.concatenate(parts, axis=2)  # [L, H, S]
    return [{"alpha": a} for a in split_seeds(alpha, sizes, 2)]


PROBE = Probe(
    name="attention_sinks",
    summary="attention sinks: how much attention lands on the first token, per head and layer",
    settings={
        "n_sequences": {"type": "integer", "minimum": 1, "default": 100, "description": "sequences per seed"},
        "seq_len": {"type": "integer", "minimum": 2, "default": 64, "description": "T, tokens per sequence"},
        "eps": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.3,
                "description": "alpha threshold of sink_rate_eps"},
        "prompt_set": {"type": "string", "enum": ["random", "pattern"], "default": "random",
                       "description": "random: ordinary tokens; pattern: the pattern-completion prompt [A B A B ... A]"},
    },
    build_prompts=build_prompts,
    passes=(Pass("attention_sinks", collect, prompts="attention_sinks", layers="none", attentions=True),),
    metric=sink_metrics, batched=True, scalars=SCALARS, per_layer=PER_LAYER, per_head=PER_HEAD, prompt_axes=PROMPT_AXES,
    per_prompt=per_prompt,
    fixed=lambda s: {"eps": float(s.get("eps", 0.3))},
    prompt_length=lambda s: ("probes.attention_sinks.seq_len", int(s["seq_len"])),
    rng_stream=3,
)
