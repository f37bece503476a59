"""Induction on repeated random tokens: per-layer surprisal, copying accuracy, prefix matching.

Pure functions of arrays (see docs/metrics.md, "Induction"). A sequence
is a block x_0..x_{m-1} repeated once; query positions t = m .. 2m-2 predict
x_{t+1}. All sequences have the same number of query positions, so a mean of
per-sequence means is the mean over sequences and positions.
"""

from __future__ import annotations

import numpy as np

from icl_probe.probes.base import Pass, Probe, concat_sets, equal_lengths, split_seeds
from icl_probe.probes.common import ols_rows

SCALARS = ("total_contraction", "rho2_per_layer", "geometric_fit_r2", "monotone_improve_frac",
           "induction_acc", "induction_logp", "icl_score")
PER_LAYER = ("surprisal",)
PER_HEAD = ("prefix_matching",)
PROMPT_AXES = {"surprisal": 1, "final_logp": 0, "final_correct": 0, "loss_first": 0, "prefix": 2}


def query_positions(block_len: int) -> np.ndarray:
    """Query positions t = m .. 2m-2 (target x_{t+1} lies in the second block)."""
    return np.arange(block_len, 2 * block_len - 1)


def first_block_positions(block_len: int) -> np.ndarray:
    """Positions t = 0 .. m-2 predicting x_1 .. x_{m-1} the first time (icl_score baseline)."""
    return np.arange(0, block_len - 1)


def prefix_positions(block_len: int) -> np.ndarray:
    """Source position t - m + 1 attended by a prefix-matching head at each query t."""
    return query_positions(block_len) - block_len + 1


def surprisal_curve(e: np.ndarray) -> dict:
    """Shape statistics of a per-layer surprisal curve ``e [L+1]`` (nats).

    total_contraction = min e / e_0; OLS of ln e_l on l over layers argmax .. argmin
    (inclusive) gives rho2_per_layer = exp(2 slope) and geometric_fit_r2, both None
    when argmin <= argmax + 1; monotone_improve_frac = share of l -> l+1 where e falls.
    With curves ``e [B, L+1]`` every value is ``[B]`` (NaN where None).
    """
    e = np.asarray(e, dtype=np.float64)
    lo, hi = np.argmin(e, axis=-1), np.argmax(e, axis=-1)
    l = np.broadcast_to(np.arange(e.shape[-1], dtype=np.float64), e.shape)
    span = (l >= hi[..., None]) & (l <= lo[..., None])
    fitted = lo > hi + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        slope, _, _, r2 = ols_rows(l, np.log(np.where(span, e, 1.0)), mask=span & fitted[..., None])
        out = {
            "total_contraction": e.min(axis=-1) / e[..., 0],
            "rho2_per_layer": np.where(fitted, np.exp(2.0 * slope), np.nan),
            "geometric_fit_r2": np.where(fitted, r2, np.nan),
            "monotone_improve_frac": ((e[..., 1:] < e[..., :-1]).mean(axis=-1) if e.shape[-1] > 1
                                      else np.full(e.shape[:-1], np.nan)),
        }
    if e.ndim == 1:
        out = {k: float(v) for k, v in out.items()}
        if not fitted:
            out["rho2_per_layer"] = out["geometric_fit_r2"] = None
    return out


def induction_metrics(surprisal: np.ndarray, final_logp: np.ndarray, final_correct: np.ndarray,
                      loss_first: np.ndarray, prefix: np.ndarray | None = None) -> dict:
    """Every induction row of the spec for one seed.

    surprisal ``[L+1, S]``: per layer and sequence, mean over query positions of
    -log softmax(lens(h_l))[target]; final_logp ``[S]`` and final_correct ``[S]``:
    mean final-layer target log-prob and argmax accuracy over query positions;
    loss_first ``[S]``: mean final-layer loss over first-block positions t = 0..m-2;
    prefix ``[L, H, S]``: mean attention from query t to t - m + 1 (or None).
    With a leading resample axis on every input, every value gains it (``Probe.batched``).
    """
    e = np.asarray(surprisal, dtype=np.float64).mean(axis=-1)
    out = {"surprisal": e, **surprisal_curve(e)}
    final_logp = np.asarray(final_logp, dtype=np.float64)
    final_correct = np.asarray(final_correct, dtype=np.float64)  # float64 sums, as per_prompt's
    loss_first = np.asarray(loss_first, dtype=np.float64)
    out["induction_acc"] = np.mean(final_correct, axis=-1)
    out["induction_logp"] = final_logp.mean(axis=-1)
    out["icl_score"] = np.mean(loss_first, axis=-1) - (-final_logp).mean(axis=-1)
    if prefix is not None:
        out["prefix_matching"] = np.asarray(prefix, dtype=np.float64).mean(axis=-1)
    if e.ndim == 1:
        for k in ("induction_acc", "induction_logp", "icl_score"):
            out[k] = float(out[k])
    return out


def per_prompt(surprisal: np.ndarray, final_logp: np.ndarray, final_correct: np.ndarray,
               loss_first: np.ndarray, prefix: np.ndarray | None = None) -> dict:
    """Per-sequence values of induction_acc and induction_logp (their means are the scalars).

    Same inputs as :func:`induction_metrics`; returns ``{name: (num [S], None)}``.
    """
    return {"induction_acc": (np.asarray(final_correct, dtype=np.float64), None),
            "induction_logp": (np.asarray(final_logp, dtype=np.float64), None)}


# --------------------------------------------------------------------- prompts
def induction_sequences(rng: np.random.Generator, ordinary, block_len: int, n_sequences: int) -> list[list[int]]:
    """``n_sequences`` blocks of ``block_len`` distinct ordinary tokens drawn from ``rng``, each repeated once."""
    from icl_probe.prompts import PromptError

    if len(ordinary) < block_len:
        raise PromptError(f"induction: block_len {block_len} exceeds the {len(ordinary)} ordinary tokens")
    pool = np.asarray(ordinary)
    out = []
    for _ in range(int(n_sequences)):
        block = [int(t) for t in rng.choice(pool, size=int(block_len), replace=False)]
        out.append(block + block)
    return out


def build_prompts(ctx) -> dict:
    m, n = int(ctx.settings["block_len"]), int(ctx.settings["n_sequences"])
    return {"block_len": m, "sets": [
        {"seed": s, "sequences": induction_sequences(ctx.rng(s), ctx.ordinary(), m, n)} for s in ctx.seeds]}


# --------------------------------------------------------------------- the model pass
def collect(lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``surprisal [L+1, S]``, ``final_logp [S]``, ``final_correct [S]``,
    ``loss_first [S]``, ``prefix [L, H, S]`` (one eager pass)."""
    import torch

    m = int(block["block_len"])
    seqs, sizes = concat_sets(block, "sequences")
    equal_lengths(seqs, "induction")
    n_l = lens.n_layers
    reads = list(range(2 * m - 1))  # positions 0 .. 2m-2
    q = torch.as_tensor(query_positions(m), device=lens.device)
    first = torch.as_tensor(first_block_positions(m), device=lens.device)
    src = torch.as_tensor(prefix_positions(m), device=lens.device)
    out = {k: [] for k in ("surprisal", "final_logp", "final_correct", "loss_first", "prefix")}
    start = 0
    for cap in lens.run(seqs, [reads] * len(seqs), layers=range(n_l + 1), attentions=True,
                        batch_size=batch_size, pad_id=pad_id):
        batch = torch.as_tensor(seqs[start : start + len(cap.offsets)], device=lens.device)
        start += len(cap.offsets)
        tq, tf = batch[:, q + 1], batch[:, first + 1]
        surprisal = []
        for l in range(n_l + 1):
            logp, correct = lens.target_logprob(cap.hidden[l][:, q], tq, with_correct=l == n_l)
            surprisal.append((-logp).mean(-1))
        out["surprisal"].append(torch.stack(surprisal).cpu().numpy())
        out["final_logp"].append(logp.mean(-1).cpu().numpy())
        out["final_correct"].append(correct.float().mean(-1).cpu().numpy())
        logp_first, _ = lens.target_logprob(cap.hidden[n_l][:, first], tf, with_correct=False)
        out["loss_first"].append((-logp_first).mean(-1).cpu().numpy())
        prefix = [a[:, :, q, src].float().mean(-1) for a in cap.attentions]  # L x [B, H]
        out["prefix"].append(torch.stack(prefix).cpu().numpy())  # [L, B, H]
    arrays = {k: np.concatenate(v, axis=1 if k in ("surprisal", "prefix") else 0) for k, v in out.items()}
    arrays["prefix"] = arrays["prefix"].transpose(0, 2, 1)  # [L, H, S]
    per_seed = [dict() for _ in sizes]
    for k, a in arrays.items():
        for d, part in zip(per_seed, split_seeds(a, sizes, PROMPT_AXES[k])):
            d[k] = part
    return per_seed


PROBE = Probe(
    name="induction",
    summary="induction on repeated random tokens: per-layer surprisal, copying accuracy, prefix matching",
    settings={
        "block_len": {"type": "integer", "minimum": 2, "default": 32, "description": "m, tokens in the repeated block"},
        "n_sequences": {"type": "integer", "minimum": 1, "default": 48, "description": "sequences per seed"},
    },
    build_prompts=build_prompts,
    passes=(Pass("induction", collect, prompts="induction", layers="all", positions="0 .. 2m-2",
                 attentions=True),),
    metric=induction_metrics, batched=True, scalars=SCALARS, per_layer=PER_LAYER, per_head=PER_HEAD,
    prompt_axes=PROMPT_AXES,
    per_prompt=per_prompt,
    prompt_length=lambda s: ("probes.induction.block_len", 2 * int(s["block_len"])),
    rng_stream=2,
)
