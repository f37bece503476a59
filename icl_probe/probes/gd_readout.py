"""GD readout: does the residual stream move the digit readout toward the least-squares answer?

Pure functions of arrays (see docs/metrics.md, "GD readout").
Per layer l = 0..L and prompt p: y_hat[l, p] = sum_d softmax(lens(h_l)[digit ids])_d * d,
r = y* - y_hat, dy[l, p] = y_hat[l+1, p] - y_hat[l, p].
"""

from __future__ import annotations

import numpy as np

from icl_probe.probes.base import Pass, Probe, concat_sets, prompt_input_ids, split_seeds
from icl_probe.probes.common import ols_rows, rankdata_rows

SCALARS = ("mean_err_embed", "mean_err_final", "error_reduction", "slope_alpha", "intercept", "r", "r2",
           "sign_agreement", "depth_rho", "rho_pred", "rho_obs", "rate_rel_error", "contracting_frac",
           "curvature_corr")
PER_LAYER = ("mean_err",)
PROMPT_AXES = {"y_hat": 1, "y_star": 0, "x_ctx": 0}
LOG_FLOOR = 1e-6  # abs(r) below this is skipped in the log-linear fits


def expected_digit(digit_logits: np.ndarray) -> np.ndarray:
    """y_hat = sum_d softmax(logits)_d * d; ``[..., 10] -> [...]`` (digits 0..9)."""
    z = np.asarray(digit_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ np.arange(z.shape[-1], dtype=np.float64)


def _per_prompt_log_slopes(abs_r: np.ndarray) -> np.ndarray:
    """OLS slope of log abs(r[l, p]) on l for each prompt, skipping abs(r) < 1e-6.

    ``abs_r [..., L+1, P] -> [..., P]``; NaN where fewer than two layers remain.
    """
    keep = np.swapaxes(abs_r >= LOG_FLOOR, -1, -2)  # [..., P, L+1]
    log_abs = np.log(np.where(keep, np.swapaxes(abs_r, -1, -2), 1.0))
    return ols_rows(np.arange(abs_r.shape[-2], dtype=np.float64), log_abs, mask=keep)[0]


def gd_metrics(y_hat: np.ndarray, y_star: np.ndarray, x_ctx: np.ndarray) -> dict:
    """Every GD-readout row of the spec for one seed.

    y_hat ``[L+1, P]`` expected digit per layer (l = 0 embedding, L last block) and prompt;
    y_star ``[P]`` exact least-squares answer a*x_q + b; x_ctx ``[P, k]`` in-context x.
    Returns scalars (float, NaN when undefined) and ``mean_err [L+1]``. With a leading resample
    axis on every input (``[B, L+1, P]``, ``[B, P]``, ``[B, P, k]``) every value gains it: the
    bootstrap evaluates all its resamples in one call (``Probe.batched``).
    """
    y_hat = np.asarray(y_hat, dtype=np.float64)
    y_star = np.asarray(y_star, dtype=np.float64)
    x_ctx = np.asarray(x_ctx, dtype=np.float64)
    lead = y_star.shape[:-1]  # () for one seed, (B,) for resamples
    n_l, n_p = y_hat.shape[-2:]
    r = y_star[..., None, :] - y_hat  # [..., L+1, P]
    abs_r = np.abs(r)
    mean_err = abs_r.mean(axis=-1)
    dy = np.diff(y_hat, axis=-2)  # [..., L, P]
    r_in = r[..., :-1, :]

    def pooled(a):  # layers x prompts as one sample
        return a.reshape(lead + (-1,))

    slope, intercept, corr, r2 = ols_rows(pooled(r_in), pooled(dy))
    moved = dy != 0
    n_moved = pooled(moved).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sign_agreement = np.where(n_moved > 0, pooled(moved & (np.sign(dy) == np.sign(r_in))).sum(axis=-1)
                                  / n_moved, np.nan)
    layer = np.broadcast_to(np.arange(n_l, dtype=np.float64)[:, None], (n_l, n_p))
    depth_rho = ols_rows(rankdata_rows(layer.ravel()), rankdata_rows(pooled(-abs_r)))[2]
    keep = abs_r >= LOG_FLOOR
    log_abs = np.log(np.where(keep, abs_r, 1.0))
    s_obs = ols_rows(pooled(np.broadcast_to(layer, abs_r.shape)), pooled(log_abs), mask=pooled(keep))[0]
    rho_pred = 1.0 - slope
    rho_obs = np.exp(s_obs)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_rel_error = np.abs(rho_pred - rho_obs) / rho_obs
    rho_p = np.exp(_per_prompt_log_slopes(abs_r))
    a_p = (x_ctx ** 2).sum(axis=-1)
    ok = np.isfinite(rho_p)
    curvature_corr = ols_rows(a_p, np.where(ok, rho_p, 0.0), mask=ok)[2]
    out = {
        "mean_err": mean_err,
        "mean_err_embed": mean_err[..., 0],
        "mean_err_final": mean_err[..., -1],
        "error_reduction": mean_err[..., 0] - mean_err[..., -1],
        "slope_alpha": slope,
        "intercept": intercept,
        "r": corr,
        "r2": r2,
        "sign_agreement": sign_agreement,
        "depth_rho": depth_rho,
        "rho_pred": rho_pred,
        "rho_obs": rho_obs,
        "rate_rel_error": rate_rel_error,
        "contracting_frac": (abs_r[..., -1, :] < abs_r[..., 0, :]).mean(axis=-1),
        "curvature_corr": curvature_corr,
    }
    if not lead:
        out = {k: (v if k in PER_LAYER else float(v)) for k, v in out.items()}
    return out


def per_prompt(y_hat: np.ndarray, y_star: np.ndarray, x_ctx: np.ndarray) -> dict:
    """Per-prompt numerators and denominators of the GD-readout scalars that are ratios of sums.

    Same inputs as :func:`gd_metrics`; returns ``{name: (num [P], den [P] or None)}`` with
    ``gd_metrics(...)[name] == num.sum() / den.sum()`` (``num.mean()`` when den is None):
    error_reduction, mean_err_embed, mean_err_final (den None) and sign_agreement
    (num_p: layers l < L with dy != 0 whose sign matches r; den_p: layers with dy != 0).
    """
    y_hat = np.asarray(y_hat, dtype=np.float64)
    r = np.asarray(y_star, dtype=np.float64)[None, :] - y_hat
    abs_r = np.abs(r)
    dy = np.diff(y_hat, axis=0)
    moved = dy != 0
    agree = moved & (np.sign(dy) == np.sign(r[:-1]))
    return {
        "error_reduction": (abs_r[0] - abs_r[-1], None),
        "sign_agreement": (agree.sum(axis=0).astype(np.float64), moved.sum(axis=0).astype(np.float64)),
        "mean_err_embed": (abs_r[0], None),
        "mean_err_final": (abs_r[-1], None),
    }


# --------------------------------------------------------------------- prompts
def digit_answers(gd: dict) -> list[str]:
    """The ten answer strings d = 0..9 as they follow a query (e.g. ``" 5"``)."""
    from icl_probe.prompts import PromptError

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
    from icl_probe.prompts import DigitTokenError

    strings = digit_answers(gd)
    ids = []
    for s in strings:
        toks = list(tokenizer(s, add_special_tokens=False)["input_ids"])
        if len(toks) != 1:
            raise DigitTokenError(
                f"gd_readout: the digit answer {s!r} is {len(toks)} tokens {toks} in this tokenizer, "
                "not exactly one; change probes.gd_readout.pair_format / query_format"
            )
        ids.append(toks[0])
    if len(set(ids)) != 10:
        raise DigitTokenError(f"gd_readout: the digit answers {strings!r} do not map to ten distinct tokens: {ids}")
    return ids, strings


def gd_problems(rng: np.random.Generator, gd: dict) -> list[dict]:
    """GD-readout problems y = a*x + b (text only; no tokenizer), drawn from ``rng``.

    a in {1, 2}; b uniform in {0 .. 9 - 4a}; k in-context x and the query x_q
    uniform in {0..4}; y* = a*x_q + b.
    """
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


def build_prompts(ctx) -> dict:
    """Per seed, the problems with their token ids; the digit answers' ids (checked to be one token each)."""
    from icl_probe.prompts import DigitTokenError

    ids, strings = digit_token_ids(ctx.tokenizer, ctx.settings)
    sets = []
    for seed in ctx.seeds:
        probs = gd_problems(ctx.rng(seed), ctx.settings)
        for p in probs:
            p["input_ids"] = ctx.encode(p["text"])
            with_answer = ctx.encode(p["text"] + strings[p["y_star"]])
            if with_answer != p["input_ids"] + [ids[p["y_star"]]]:
                raise DigitTokenError(
                    f"gd_readout: the answer {strings[p['y_star']]!r} does not tokenize as one token "
                    f"after the prompt {p['text']!r} ({with_answer} vs {p['input_ids']} + [{ids[p['y_star']]}])"
                )
        sets.append({"seed": seed, "prompts": probs})
    return {"digit_ids": ids, "digit_strings": strings, "sets": sets}


def check_tokenizer(block: dict, tokenizer, settings: dict) -> str | None:
    """Why the prompt file does not fit this checkpoint's tokenizer (digits mapped elsewhere), or None."""
    ids, _ = digit_token_ids(tokenizer, settings)
    if ids != block["digit_ids"]:
        return (f"this checkpoint's tokenizer maps the digits to {ids}, the prompt file to "
                f"{block['digit_ids']}: prompts made with another tokenizer")
    return None


# --------------------------------------------------------------------- the model pass
def collect(lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``y_hat [L+1, P]``, ``y_star [P]``, ``x_ctx [P, k]`` (one pass, digit rows only)."""
    import torch

    problems, sizes = concat_sets(block, "prompts")
    seqs = [p["input_ids"] for p in problems]
    layers = range(lens.n_layers + 1)
    parts = []
    for cap in lens.run(seqs, [[len(s) - 1] for s in seqs], layers=layers, batch_size=batch_size, pad_id=pad_id):
        h = torch.stack([cap.hidden[l][:, 0] for l in layers])  # [L+1, B, d]
        parts.append(expected_digit(lens.row_logits(h, block["digit_ids"]).cpu().numpy()))
    y_hat = np.concatenate(parts, axis=1)
    y_star = np.array([p["y_star"] for p in problems], dtype=np.float64)
    x_ctx = np.array([p["x"] for p in problems], dtype=np.float64)
    return [{"y_hat": a, "y_star": b, "x_ctx": c} for a, b, c in
            zip(split_seeds(y_hat, sizes, 1), split_seeds(y_star, sizes, 0), split_seeds(x_ctx, sizes, 0))]


PROBE = Probe(
    name="gd_readout",
    summary="logit-lens readout of in-context linear regression: does each layer move toward y*?",
    settings={
        "k": {"type": "integer", "minimum": 1, "default": 5, "description": "in-context pairs per prompt"},
        "n_prompts": {"type": "integer", "minimum": 2, "default": 80, "description": "prompts per seed"},
        "pair_format": {"type": "string", "default": "{x} -> {y}", "description": "text of one in-context pair"},
        "query_format": {"type": "string", "default": "{x} ->", "description": "text of the query"},
        "separator": {"type": "string", "default": "\n", "description": "between pairs"},
    },
    build_prompts=build_prompts,
    sequences=prompt_input_ids,
    passes=(Pass("gd_readout", collect, prompts="gd_readout", layers="all", positions="last"),),
    metric=gd_metrics, batched=True, scalars=SCALARS, per_layer=PER_LAYER, prompt_axes=PROMPT_AXES,
    per_prompt=per_prompt,
    check_tokenizer=check_tokenizer,
    rng_stream=1,
)
