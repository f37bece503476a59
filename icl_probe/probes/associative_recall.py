"""Associative recall ``k1 v1 ... kn vn kq -> v``: a held-out in-context capability.

Pure functions of arrays (see docs/metrics.md, "Associative recall").
"""

from __future__ import annotations

import numpy as np

from icl_probe.probes.base import Pass, Probe, concat_sets, prompt_input_ids, split_seeds

SCALARS = ("ar_acc", "ar_logp")
PROMPT_AXES = {"logp": 0, "correct": 0}


def recall_metrics(logp: np.ndarray, correct: np.ndarray) -> dict:
    """ar_acc and ar_logp for one seed.

    logp ``[P]``: final-layer log-prob of the target value (nats); correct ``[P]``:
    whether the target is the final-layer argmax. With a leading resample axis ``[B, P]`` on
    both, each value is ``[B]`` (``Probe.batched``).
    """
    logp, correct = np.asarray(logp, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    out = {"ar_acc": np.mean(correct, axis=-1), "ar_logp": np.mean(logp, axis=-1)}
    return {k: float(v) for k, v in out.items()} if logp.ndim == 1 else out


def per_prompt(logp: np.ndarray, correct: np.ndarray) -> dict:
    """Per-prompt values of ar_acc and ar_logp (their means are the scalars): ``{name: (num [P], None)}``."""
    return {"ar_acc": (np.asarray(correct, dtype=np.float64), None),
            "ar_logp": (np.asarray(logp, dtype=np.float64), None)}


# --------------------------------------------------------------------- prompts
def recall_prompts(rng: np.random.Generator, ordinary, n_items: int, n_pairs: int, n_prompts: int) -> dict:
    """Associative-recall prompts ``k1 v1 ... kn vn kq`` over ``n_items`` single-token items from ``rng``.

    Keys and values of a prompt are 2*n_pairs distinct items; kq is a uniformly
    drawn key and the target its value.
    """
    from icl_probe.prompts import PromptError

    if len(ordinary) < n_items:
        raise PromptError(f"associative_recall: n_items {n_items} exceeds the {len(ordinary)} ordinary tokens")
    if 2 * n_pairs > n_items:
        raise PromptError(f"associative_recall: {n_pairs} pairs need {2 * n_pairs} distinct items, have {n_items}")
    items = [int(t) for t in rng.choice(np.asarray(ordinary), size=int(n_items), replace=False)]
    prompts = []
    for _ in range(int(n_prompts)):
        chosen = rng.choice(int(n_items), size=2 * int(n_pairs), replace=False)
        keys, values = [items[i] for i in chosen[:n_pairs]], [items[i] for i in chosen[n_pairs:]]
        q = int(rng.integers(0, n_pairs))
        ids = [t for kv in zip(keys, values) for t in kv] + [keys[q]]
        prompts.append({"input_ids": ids, "target": values[q]})
    return {"items": items, "prompts": prompts}


def build_prompts(ctx) -> dict:
    s = ctx.settings
    return {"sets": [{"seed": seed, **recall_prompts(ctx.rng(seed), ctx.ordinary(), int(s["n_items"]),
                                                     int(s["n_pairs"]), int(s["n_prompts"]))}
                     for seed in ctx.seeds]}


def check_settings(s: dict) -> str | None:
    if 2 * s["n_pairs"] > s["n_items"]:
        return (f"'probes.associative_recall.n_pairs' is {s['n_pairs']}, but {s['n_pairs']} distinct keys and "
                f"values need 2 x n_pairs <= n_items ({s['n_items']})")
    return None


# --------------------------------------------------------------------- the model pass
def collect(lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``logp [P]``, ``correct [P]`` at the final layer only."""
    import torch

    prompts, sizes = concat_sets(block, "prompts")
    seqs = [p["input_ids"] for p in prompts]
    targets = torch.as_tensor([p["target"] for p in prompts])
    n_l, logps, corrects, start = lens.n_layers, [], [], 0
    for cap in lens.run(seqs, [[len(s) - 1] for s in seqs], layers=[n_l], batch_size=batch_size, pad_id=pad_id):
        b = cap.hidden[n_l].shape[0]
        logp, correct = lens.target_logprob(cap.hidden[n_l][:, 0], targets[start : start + b])
        start += b
        logps.append(logp.cpu().numpy())
        corrects.append(correct.cpu().numpy())
    logp, correct = np.concatenate(logps), np.concatenate(corrects).astype(np.float64)
    return [{"logp": a, "correct": c} for a, c in zip(split_seeds(logp, sizes, 0), split_seeds(correct, sizes, 0))]


PROBE = Probe(
    name="associative_recall",
    summary="associative recall k1 v1 ... kn vn kq -> v: a held-out in-context capability",
    settings={
        "n_items": {"type": "integer", "minimum": 2, "default": 128, "description": "single-token items"},
        "n_pairs": {"type": "integer", "minimum": 1, "default": 20, "description": "key-value pairs per prompt"},
        "n_prompts": {"type": "integer", "minimum": 1, "default": 64, "description": "prompts per seed"},
    },
    build_prompts=build_prompts,
    sequences=prompt_input_ids,
    passes=(Pass("associative_recall", collect, prompts="associative_recall", layers="final", positions="last"),),
    metric=recall_metrics, batched=True, scalars=SCALARS, prompt_axes=PROMPT_AXES, per_prompt=per_prompt,
    prompt_length=lambda s: ("probes.associative_recall.n_pairs", 2 * int(s["n_pairs"]) + 1),
    check_settings=check_settings,
    rng_stream=4,
)
