"""Probe one checkpoint: load it once, run every enabled probe, write one JSON per probe.

This is the DAG step "checkpoint -> activations -> per-checkpoint results". The
model passes live here (each prompt set goes through the model once, in batches,
under ``torch.inference_mode``); the numbers come from the pure metric functions
in :mod:`icl_probe.probes`. Hidden states are captured only for the layers and
positions a probe reads, attention probabilities only in the induction and sink
passes.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
import numpy as np
import torch

import icl_probe
from icl_probe.arch import context_length
from icl_probe.config import ConfigError, device_problem
from icl_probe.hub.errors import DamagedCheckpointError
from icl_probe.hub.integrity import check_cached_checkpoint
from icl_probe.io import write_json
from icl_probe.lens import Lens
from icl_probe.probes import associative_recall as ar_probe
from icl_probe.probes import attention_sinks as sink_probe
from icl_probe.probes import gd_readout as gd_probe
from icl_probe.probes import induction as ind_probe
from icl_probe.probes.common import summarise
from icl_probe.prompts import (
    PROBES, PromptError, build_prompts, check_context, digit_token_ids, load_prompts, prompt_settings,
    write_prompts,
)

BOOTSTRAP_SEED = 0  # the bootstrap RNG is seeded, so results are byte-identical across runs


# --------------------------------------------------------------------- loading
def probe_settings_of(settings: dict) -> dict:
    """The ``probes`` section: ``settings`` itself, or ``settings["probes"]`` for a whole config."""
    inner = settings.get("probes")
    return inner if isinstance(inner, dict) and "seeds" in inner else settings


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    return getattr(torch, dtype)


@contextmanager
def _checked_files(repo_id: str, revision: str | None, cache_dir, local_files_only: bool, *,
                   tokenizer: bool = False, weights: bool = False):
    """Around a ``from_pretrained``: the files it reads (config.json always, plus the tokenizer or the
    weights) are checked first when loading only from disk, and after a failure otherwise, so a damaged
    file is reported as such (not as a library traceback)."""
    if local_files_only:
        check_cached_checkpoint(repo_id, revision, cache_dir, tokenizer=tokenizer, weights=weights, required=True)
    try:
        yield
    except Exception as err:
        try:
            check_cached_checkpoint(repo_id, revision, cache_dir, tokenizer=tokenizer, weights=weights)
        except DamagedCheckpointError as damaged:
            raise damaged from err
        raise


def load_tokenizer(repo_id: str, revision: str | None, *, cache_dir=None, local_files_only: bool = False):
    """The checkpoint's tokenizer, with ``pad_token`` set to eos when it has none."""
    from transformers import AutoTokenizer

    with _checked_files(repo_id, revision, cache_dir, local_files_only, tokenizer=True):
        tok = AutoTokenizer.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                            local_files_only=local_files_only)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_checkpoint(repo_id: str, revision: str | None, *, cache_dir=None, local_files_only: bool = False,
                    device: str = "cpu", dtype: str = "float32"):
    """Load model and tokenizer of one revision (one ``from_pretrained`` each, no remote code)."""
    from transformers import AutoModelForCausalLM

    if problem := device_problem(str(device)):
        raise ConfigError(problem)
    tok = load_tokenizer(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only)
    with _checked_files(repo_id, revision, cache_dir, local_files_only, weights=True):
        lm = AutoModelForCausalLM.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                                  local_files_only=local_files_only, dtype=_torch_dtype(dtype))
    return lm.to(device).eval(), tok


def make_prompts(repo_id: str, revision: str | None, out_path, settings: dict, cache_dir=None,
                 local_files_only: bool = False) -> Path:
    """Write a model's prompt file, loading only its tokenizer and config (never the weights).

    ``settings``: the config's ``probes`` section, or the whole config.
    """
    from transformers import AutoConfig

    settings = probe_settings_of(settings)
    tok = load_tokenizer(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only)
    with _checked_files(repo_id, revision, cache_dir, local_files_only):
        config = AutoConfig.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                            local_files_only=local_files_only)
    prompts = build_prompts(tok, settings, context_length=context_length(config),
                            vocab_limit=getattr(config, "vocab_size", None),
                            source={"repo_id": repo_id, "revision": revision})
    return write_prompts(out_path, prompts)


# --------------------------------------------------------------------- model passes
def _concat(prompts: dict, probe: str, key: str) -> tuple[list, list[int]]:
    """All seeds' sequences in one list (one pass through the model) and the seed sizes."""
    sets = prompts[probe]["sets"]
    items = [x for s in sets for x in s[key]]
    return items, [len(s[key]) for s in sets]


def _split(arr: np.ndarray, sizes: list[int], axis: int) -> list[np.ndarray]:
    return np.split(arr, np.cumsum(sizes)[:-1], axis=axis)


def _equal_lengths(seqs: list[list[int]], probe: str) -> int:
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise PromptError(f"{probe}: sequences must all have one length, got {sorted(lengths)}")
    return lengths.pop()


def collect_gd(lens: Lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``y_hat [L+1, P]``, ``y_star [P]``, ``x_ctx [P, k]`` (one pass, digit rows only)."""
    problems, sizes = _concat({"gd_readout": block}, "gd_readout", "prompts")
    seqs = [p["input_ids"] for p in problems]
    layers = range(lens.n_layers + 1)
    parts = []
    for cap in lens.run(seqs, [[len(s) - 1] for s in seqs], layers=layers, batch_size=batch_size, pad_id=pad_id):
        h = torch.stack([cap.hidden[l][:, 0] for l in layers])  # [L+1, B, d]
        parts.append(gd_probe.expected_digit(lens.row_logits(h, block["digit_ids"]).cpu().numpy()))
    y_hat = np.concatenate(parts, axis=1)
    y_star = np.array([p["y_star"] for p in problems], dtype=np.float64)
    x_ctx = np.array([p["x"] for p in problems], dtype=np.float64)
    return [{"y_hat": a, "y_star": b, "x_ctx": c}
            for a, b, c in zip(_split(y_hat, sizes, 1), _split(y_star, sizes, 0), _split(x_ctx, sizes, 0))]


def collect_induction(lens: Lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``surprisal [L+1, S]``, ``final_logp [S]``, ``final_correct [S]``,
    ``loss_first [S]``, ``prefix [L, H, S]`` (one eager pass)."""
    m = int(block["block_len"])
    seqs, sizes = _concat({"induction": block}, "induction", "sequences")
    _equal_lengths(seqs, "induction")
    n_l = lens.n_layers
    reads = list(range(2 * m - 1))  # positions 0 .. 2m-2
    q = torch.as_tensor(ind_probe.query_positions(m), device=lens.device)
    first = torch.as_tensor(ind_probe.first_block_positions(m), device=lens.device)
    src = torch.as_tensor(ind_probe.prefix_positions(m), device=lens.device)
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
        for d, part in zip(per_seed, _split(a, sizes, ind_probe.PROMPT_AXES[k])):
            d[k] = part
    return per_seed


def collect_sinks(lens: Lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``alpha [L, H, S]`` (one eager pass, no hidden states)."""
    seqs, sizes = _concat({"attention_sinks": block}, "attention_sinks", "sequences")
    _equal_lengths(seqs, "attention_sinks")
    parts = []
    for cap in lens.run(seqs, None, attentions=True, batch_size=batch_size, pad_id=pad_id):
        # first_token_attention on the device: [B, H, T, T] -> [H, B], only that comes back
        parts.append(torch.stack([a[:, :, 1:, 0].float().mean(-1).T for a in cap.attentions]).cpu().numpy())
    alpha = np.concatenate(parts, axis=2)  # [L, H, S]
    return [{"alpha": a} for a in _split(alpha, sizes, 2)]


def collect_recall(lens: Lens, block: dict, *, batch_size: int, pad_id: int) -> list[dict]:
    """Per seed: ``logp [P]``, ``correct [P]`` at the final layer only."""
    prompts, sizes = _concat({"associative_recall": block}, "associative_recall", "prompts")
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
    return [{"logp": a, "correct": c} for a, c in zip(_split(logp, sizes, 0), _split(correct, sizes, 0))]


# probe -> (collector, metric function, prompt axes, scalars, per-layer, per-head, fixed kwargs from settings,
#           per-prompt function: the numerators/denominators written as "per_prompt")
PROBE_TABLE: dict[str, tuple] = {
    "gd_readout": (collect_gd, gd_probe.gd_metrics, gd_probe.PROMPT_AXES, gd_probe.SCALARS,
                   gd_probe.PER_LAYER, (), lambda s: {}, gd_probe.per_prompt),
    "induction": (collect_induction, ind_probe.induction_metrics, ind_probe.PROMPT_AXES, ind_probe.SCALARS,
                  ind_probe.PER_LAYER, ind_probe.PER_HEAD, lambda s: {}, ind_probe.per_prompt),
    "attention_sinks": (collect_sinks, sink_probe.sink_metrics, sink_probe.PROMPT_AXES, sink_probe.SCALARS,
                        sink_probe.PER_LAYER, sink_probe.PER_HEAD, lambda s: {"eps": float(s.get("eps", 0.3))},
                        sink_probe.per_prompt),
    "associative_recall": (collect_recall, ar_probe.recall_metrics, ar_probe.PROMPT_AXES, ar_probe.SCALARS,
                           (), (), lambda s: {}, ar_probe.per_prompt),
}


def run_probe(lens: Lens, probe: str, prompts: dict, settings: dict, *, pad_id: int) -> dict:
    """One probe on a loaded model: ``{"scalars", "per_seed", "per_layer", "per_head", "per_prompt"}``."""
    collect, metric, axes, scalars, per_layer, per_head, fixed, per_prompt = PROBE_TABLE[probe]
    per_seed = collect(lens, prompts[probe], batch_size=int(settings.get("batch_size", 16)), pad_id=pad_id)
    return summarise(metric, per_seed, axes, scalars=scalars, per_layer=per_layer, per_head=per_head,
                     n_boot=int(settings.get("bootstrap", 1000)), rng_seed=BOOTSTRAP_SEED,
                     fixed=fixed(settings.get(probe, {})), per_prompt=per_prompt)


# --------------------------------------------------------------------- the checkpoint
def _step_from_revision(revision: str | None) -> int | None:
    m = re.search(r"(?:^|-)step(\d+)", revision or "")
    return int(m.group(1)) if m else None


def _check_prompts(prompts: dict, settings: dict, tok, lm) -> None:
    if prompt_settings(settings) != prompts["settings"]:
        raise PromptError("the prompt file was made with other probe settings than the ones given; "
                          "remake it (icl-probe prompts) after changing the config")
    if tok is not None and "gd_readout" in prompts:
        ids, _ = digit_token_ids(tok, prompts["settings"]["gd_readout"])
        if ids != prompts["gd_readout"]["digit_ids"]:
            raise PromptError(f"this checkpoint's tokenizer maps the digits to {ids}, the prompt file to "
                              f"{prompts['gd_readout']['digit_ids']}: prompts made with another tokenizer")
    ctx = context_length(lm.config)
    if ctx is not None:
        check_context(prompts, ctx)
    rows = lm.get_input_embeddings().num_embeddings
    top = max((t for p in PROBES if p in prompts for seqs in _all_seqs(prompts, p) for t in seqs), default=-1)
    if top >= rows:
        raise PromptError(f"the prompt file uses token id {top} but the model has {rows} embedding rows")


def _all_seqs(prompts: dict, probe: str):
    from icl_probe.prompts import sequences_of

    return [s for seqs in sequences_of(prompts, probe) for s in seqs]


def probe_checkpoint(
    repo_id: str,
    revision: str | None,
    out_dir,
    settings: dict,
    prompts_path,
    *,
    cache_dir=None,
    local_files_only: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    provenance: dict | None = None,
    step: int | None = None,
    tokens: int | None = None,
    suite: str | None = None,
    model: str | None = None,
    loaded: tuple | None = None,
) -> dict[str, Path]:
    """Run every enabled probe on one checkpoint from a single model load.

    ``settings`` is the config's ``probes`` section (or the whole config, whose
    ``probes`` section is then used); ``prompts_path`` the model's
    prompt file (:func:`make_prompts`). ``provenance`` (commit, weight sha256, ...)
    is merged into the recorded provenance; ``model`` is the short model name used
    in paths (default: the last part of ``repo_id``); ``step`` defaults to the one
    in the revision name. ``loaded=(model, tokenizer)`` skips loading (tests,
    benchmarks). Writes ``out_dir/{probe}.json`` atomically and returns their paths.
    """
    t0 = time.perf_counter()
    settings = probe_settings_of(settings)
    prompts = load_prompts(prompts_path)
    if loaded is None:
        lm, tok = load_checkpoint(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                  device=device, dtype=dtype)
    else:
        lm, tok = loaded
        lm.eval()
    load_seconds = time.perf_counter() - t0
    _check_prompts(prompts, settings, tok, lm)
    pad_id = tok.pad_token_id if tok is not None and tok.pad_token_id is not None else prompts["tokenizer"]["pad_id"]
    lens = Lens(lm)
    prov = {
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "icl_probe": icl_probe.__version__,
        "device": str(device),
        "dtype": str(dtype),
        "prompts_sha256": prompts["prompts_sha256"],
        "model_class": type(lm).__name__,
        **(provenance or {}),
    }
    header = {
        "schema_version": icl_probe.SCHEMA_VERSION,
        "model": model or repo_id.rstrip("/").rsplit("/", 1)[-1],
        "suite": suite,
        "repo_id": repo_id,
        "revision": revision,
        "step": step if step is not None else _step_from_revision(revision),
        "tokens": tokens,
        "provenance": prov,
    }
    written: dict[str, Path] = {}
    enabled = list(settings.get("enabled", PROBES))
    for probe in enabled:
        if probe not in PROBE_TABLE:
            raise ValueError(f"unknown probe {probe!r}; known probes: {', '.join(PROBE_TABLE)}")
        t1 = time.perf_counter()
        result = run_probe(lens, probe, prompts, settings, pad_id=pad_id)
        probe_settings = {"seeds": list(settings["seeds"]), "batch_size": int(settings.get("batch_size", 16)),
                          "bootstrap": int(settings.get("bootstrap", 1000)), **dict(settings.get(probe, {}))}
        record = {**header, "probe": probe, "settings": probe_settings, **result,
                  "timing": {"seconds": time.perf_counter() - t1, "load_seconds": load_seconds}}
        written[probe] = write_json(Path(out_dir) / f"{probe}.json", record)
    return written


__all__ = ["probe_checkpoint", "make_prompts", "load_checkpoint", "load_tokenizer", "run_probe", "PROBE_TABLE",
           "build_prompts"]
