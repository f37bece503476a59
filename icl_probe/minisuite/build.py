"""Train a tiny checkpoint suite offline and write it as a Hugging Face Hub cache.

``build_model(name, cache_dir, seed)`` trains one model of :data:`MODELS` with
AdamW on the synthetic corpus (:mod:`icl_probe.minisuite.corpus`) and saves a
checkpoint at every step of :func:`schedule` under the suite's own branch
names (Pythia ``step{N}``; OLMo-2 ``stage1-step{N}-tokens{T}B``), plus a
``main`` ref at the final checkpoint. The result is laid out exactly like the
Hub cache ``from_pretrained(repo_id, revision=..., cache_dir=...,
local_files_only=True)`` reads::

    <cache_dir>/models--mini--pythia-s/
        blobs/<sha256>                      file contents
        refs/<branch>                       40-hex commit id
        snapshots/<commit>/<file>           relative symlinks into blobs/
        icl_probe_build.json                schedule, held-out losses, timing

The model folder is assembled beside its destination and renamed into place at
the end, so an interrupted build leaves nothing a later run trusts. The same seed
gives byte-identical weight files (single-threaded CPU training).

Command line: ``python -m icl_probe.minisuite.build --model pythia-s --cache-dir DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from icl_probe.io import write_json
from icl_probe.progress import progress

from . import corpus as corpus_mod
from .tokenizer import build_tokenizer, vocabulary


@dataclass(frozen=True)
class MiniModel:
    """One model of the mini-suite: architecture and training recipe."""

    repo_id: str
    family: str  # "pythia" | "olmo2": decides the branch names
    model_type: str  # transformers config class key
    n_layer: int
    d_model: int
    n_head: int
    rotary_pct: float = 1.0  # GPT-NeoX only (Pythia: 0.25); OLMo-2 rotates every dim
    parallel_residual: bool = True  # GPT-NeoX only: attention and MLP read the same input (Pythia)
    init_std: float = 0.02  # initializer_range (transformers' default)
    tie_embeddings: bool = True  # tied unembedding: copying a token is the identity map
    final_step: int = 2000
    interval: int = 500  # spacing of checkpoints after the doubling part
    batch_size: int = 8
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 50
    # warmup-stable-decay: constant after warmup (a high constant rate ends the induction
    # plateau within the build budget), then linear decay to min_lr_frac x lr over the
    # last decay_frac of training
    min_lr_frac: float = 0.1
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    mix: dict[str, float] = field(default_factory=lambda: dict(corpus_mod.DEFAULT_MIX))


MODELS: dict[str, MiniModel] = {
    # head dimension 32 throughout (a head's OV circuit has rank head_dim: it must be
    # large enough to copy one of ~320 tokens). Each model trains until its induction
    # plateau has ended (held-out induction loss, nats: pythia-s 5.8 -> 3.6 from step 1500,
    # a partial circuit; pythia-m 5.8 -> 0.5 from step 3500; olmo2-s 5.8 -> 0.5 from step
    # 3000), and its GD readout emerges long before. Wider (d 96, 128) or sequential-residual
    # 2-layer GPT-NeoX variants and another seed did not leave the plateau within 4000-5500 steps.
    "pythia-s": MiniModel("mini/pythia-s", "pythia", "gpt_neox", n_layer=2, d_model=64, n_head=2,
                          final_step=5500, decay_frac=0.4),
    "pythia-m": MiniModel("mini/pythia-m", "pythia", "gpt_neox", n_layer=3, d_model=64, n_head=2,
                          final_step=5000, decay_frac=0.2),
    "olmo2-s": MiniModel("mini/olmo2-s", "olmo2", "olmo2", n_layer=2, d_model=64, n_head=2,
                         final_step=4500, decay_frac=0.4),
    # a smoke-test model: builds in seconds, for runs that exercise the workflow (a Slurm
    # submission, a damaged file and its rebuild) rather than the science; 200 steps are far
    # too few for induction heads, so no emergence is expected of it
    "pythia-xs": MiniModel("mini/pythia-xs", "pythia", "gpt_neox", n_layer=2, d_model=32, n_head=1,
                           final_step=200, interval=50, warmup=20),
}
# the models whose recipes are tuned to show emergence (the default run analyses these)
RESEARCH_MODELS = ("pythia-s", "pythia-m", "olmo2-s")

FILES = ("config.json", "generation_config.json", "model.safetensors",
         "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _spec(name: str) -> MiniModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown mini-suite model {name!r}; known: {sorted(MODELS)}") from None


def schedule(final_step: int, interval: int = 100) -> list[int]:
    """Checkpoint steps, Pythia-like: 0, 1, 2, 4, ... (doubling while < interval),
    then every ``interval`` steps up to and including ``final_step``."""
    steps = [0]
    s = 1
    while s < min(interval, final_step):
        steps.append(s)
        s *= 2
    steps += list(range(interval, final_step + 1, interval))
    if steps[-1] != final_step:
        steps.append(final_step)
    return steps


def tokens_per_step(name: str) -> int:
    """Training tokens per optimiser step (batch_size x seq_len)."""
    m = _spec(name)
    return m.batch_size * m.seq_len


def _tokens_label(tokens: int) -> str:
    """Billions of tokens, 3 significant digits, plain decimal, no trailing zeros."""
    if tokens == 0:
        return "0"
    b = Decimal(tokens) / Decimal(10**9)
    q = Decimal(f"{float(b):.3g}")
    text = format(q, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def branch_name(name: str, step: int) -> str:
    """The branch of ``step``: ``step{N}`` (Pythia) or ``stage1-step{N}-tokens{T}B`` (OLMo-2),
    T = step x tokens_per_step / 1e9 rounded to 3 significant digits, e.g.
    ``stage1-step200-tokens0.000205B`` (1024 tokens per step)."""
    m = _spec(name)
    if m.family == "pythia":
        return f"step{step}"
    if m.family == "olmo2":
        return f"stage1-step{step}-tokens{_tokens_label(step * tokens_per_step(name))}B"
    raise ValueError(f"unknown family {m.family!r}")


def cache_folder(name: str) -> str:
    """``models--mini--pythia-s``: the Hub cache folder name of a repo id."""
    return "models--" + _spec(name).repo_id.replace("/", "--")


def make_config(name: str):
    """The transformers config of a mini model (vocabulary from the tokenizer)."""
    from transformers import GPTNeoXConfig, Olmo2Config

    m = _spec(name)
    vocab = vocabulary()
    eos = vocab.index("<|endoftext|>")
    common = dict(vocab_size=len(vocab), hidden_size=m.d_model, num_hidden_layers=m.n_layer,
                  num_attention_heads=m.n_head, intermediate_size=4 * m.d_model,
                  max_position_embeddings=2 * m.seq_len, bos_token_id=eos, eos_token_id=eos,
                  tie_word_embeddings=m.tie_embeddings, initializer_range=m.init_std)
    if m.model_type == "gpt_neox":
        return GPTNeoXConfig(**common, rotary_pct=m.rotary_pct, use_parallel_residual=m.parallel_residual,
                             hidden_dropout=0.0, attention_dropout=0.0)
    if m.model_type == "olmo2":
        return Olmo2Config(**common, num_key_value_heads=m.n_head, pad_token_id=None,
                           rms_norm_eps=1e-6)
    raise ValueError(f"unknown model_type {m.model_type!r}")


# ----------------------------------------------------------------- evaluation


def induction_loss(model, ids) -> float:
    """Mean loss (nats) on the second copy of repeated blocks.

    ids: (n, 2m) int64 tensor, a block of m tokens repeated once. Query positions
    t = m .. 2m-2, targets ids[t+1] (as the induction probe).
    """
    import torch

    m = ids.shape[1] // 2
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, m:-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    tgt = ids[:, m + 1:]
    return float(-logp.gather(-1, tgt[..., None]).mean())


def gd_metrics(model, ids, y_star, digit_ids) -> dict[str, float]:
    """Final-layer GD-readout accuracy (argmax over digits == y*) and mean abs error
    of the expected digit under the softmax over digit logits.

    ids: (n, T) prompts ending in ``x_q ->``; y_star: (n,) answers 0..9.
    """
    import torch

    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, -1, digit_ids].float()
    p = torch.softmax(logits, dim=-1)
    y_hat = (p * torch.arange(10, dtype=torch.float32)).sum(-1)
    return {"gd_acc": float((logits.argmax(-1) == y_star).float().mean()),
            "gd_mean_err": float((y_hat - y_star.float()).abs().mean())}


# ----------------------------------------------------------------- Hub cache


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _add_snapshot(repo_dir: Path, files: dict[str, Path]) -> str:
    """Move ``files`` (name -> path) into ``repo_dir/blobs`` and link them from a
    snapshot; return its commit id (sha1 over the sorted names and sha256s)."""
    hashes = {fname: _sha256(p) for fname, p in files.items()}
    commit = hashlib.sha1(
        "".join(f"{n}\0{hashes[n]}\n" for n in sorted(hashes)).encode()).hexdigest()
    blobs = repo_dir / "blobs"
    snap = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for fname, p in files.items():
        blob = blobs / hashes[fname]
        if blob.exists():
            p.unlink()
        else:
            os.replace(p, blob)
        link = snap / fname
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, snap))
    return commit


def _set_ref(repo_dir: Path, branch: str, commit: str) -> None:
    ref = repo_dir / "refs" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)  # no newline, as huggingface_hub writes them


# ----------------------------------------------------------------- training


def _lr_at(step: int, m: MiniModel) -> float:
    """Linear warmup, constant, then linear decay to ``min_lr_frac`` x lr at the final step
    over the last ``decay_frac`` of the steps (warmup-stable-decay)."""
    if step < m.warmup:
        return m.lr * (step + 1) / m.warmup
    decay_start = int(round(m.final_step * (1 - m.decay_frac)))
    if step < decay_start:
        return m.lr
    frac = (step - decay_start) / max(1, m.final_step - decay_start)
    return m.lr * (1 - (1 - m.min_lr_frac) * frac)


def _build_prefix(folder: str) -> str:
    return f".{folder}.building-"


def remove_stale_builds(cache_dir: Path, folder: str, log=print) -> list[Path]:
    """Remove the temporary folders of earlier builds of ``folder`` that died (SIGKILL, a lost
    node): those made on this host by a process that no longer runs, and any without a host and
    process id in their name. A build still running here, or one of another host, is left."""
    host, removed = socket.gethostname(), []
    for work in sorted(cache_dir.glob(_build_prefix(folder) + "*")):
        owner = work.name[len(_build_prefix(folder)):].rsplit("-", 2)
        if len(owner) == 3 and owner[1].isdigit():
            if owner[0] != host or _running(int(owner[1])):
                continue
        shutil.rmtree(work, ignore_errors=True)
        removed.append(work)
        log(f"removed the temporary folder of a build that did not finish: {work}")
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def build_model(name: str, cache_dir: str | os.PathLike, seed: int = 0,
                log=print, threads: int = 1) -> Path:
    """Train mini model ``name`` and write its checkpoints as a Hub cache under
    ``cache_dir``; return the model's cache folder (``.../models--mini--{name}``).

    ``threads``: CPU threads torch trains with (the workflow passes the rule's
    ``threads``). Deterministic: the same ``name``, ``seed`` and ``threads`` give
    byte-identical files (a different thread count may sum in another order).
    """
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    m = _spec(name)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / cache_folder(name)
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    remove_stale_builds(cache_dir, dest.name, log=log)
    work = Path(tempfile.mkdtemp(prefix=f"{_build_prefix(dest.name)}{socket.gethostname()}-{os.getpid()}-",
                                 dir=cache_dir))
    try:
        repo_dir = work / dest.name
        repo_dir.mkdir()
        scratch = work / "scratch"

        tok_dir = work / "tokenizer"
        build_tokenizer().save_pretrained(tok_dir)

        steps = schedule(m.final_step, m.interval)
        data = torch.from_numpy(
            corpus_mod.corpus(seed, m.final_step * m.batch_size, m.seq_len, m.mix))
        held_ind = torch.from_numpy(corpus_mod.heldout_induction(seed))
        gd_ids, gd_y = (torch.from_numpy(a) for a in corpus_mod.heldout_gd(seed))
        digit_ids = [vocabulary().index(str(d)) for d in range(10)]

        torch.manual_seed(seed)
        config = make_config(name)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=m.lr, betas=m.betas, eps=1e-8,
                                weight_decay=m.weight_decay)

        checkpoints: list[dict[str, Any]] = []

        def save(step: int) -> None:
            model.eval()
            ind = induction_loss(model, held_ind)
            gd = gd_metrics(model, gd_ids, gd_y, digit_ids)
            model.train()
            if scratch.exists():
                shutil.rmtree(scratch)
            model.save_pretrained(scratch)
            files = {p.name: p for p in scratch.iterdir() if p.name in FILES}
            for p in tok_dir.iterdir():
                if p.name in FILES:
                    copy = scratch / p.name
                    shutil.copyfile(p, copy)
                    files[p.name] = copy
            commit = _add_snapshot(repo_dir, files)
            branch = branch_name(name, step)
            _set_ref(repo_dir, branch, commit)
            checkpoints.append({"step": step, "revision": branch, "commit": commit,
                                "tokens": step * tokens_per_step(name),
                                "induction_loss": ind, **gd})
            log(f"[{name}] step {step:5d}/{m.final_step}  {branch}  induction_loss {ind:.3f}  "
                f"gd_acc {gd['gd_acc']:.2f}  gd_err {gd['gd_mean_err']:.2f}  "
                f"{progress(step, m.final_step, time.perf_counter() - t_start, 'steps')}")

        model.train()
        save(0)
        for step in range(m.final_step):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, m)
            batch = data[step * m.batch_size:(step + 1) * m.batch_size]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step + 1 in steps:
                save(step + 1)
        _set_ref(repo_dir, "main", checkpoints[-1]["commit"])
        if scratch.exists():
            shutil.rmtree(scratch)

        write_json(repo_dir / "icl_probe_build.json", {
            "model": name, "repo_id": m.repo_id, "seed": seed,
            "schedule": steps, "tokens_per_step": tokens_per_step(name),
            "recipe": asdict(m), "checkpoints": checkpoints,
            "build_seconds": time.perf_counter() - t_start,
            "torch": torch.__version__, "threads": threads,
        })
        # swap into place: the old folder (if any) is moved aside first, then removed
        if dest.exists():
            old = work / "old"
            os.replace(dest, old)
        os.replace(repo_dir, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch.set_num_threads(prev_threads)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m icl_probe.minisuite.build",
                                 description="Train one mini-suite model into a Hub cache.")
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--cache-dir", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    path = build_model(args.model, args.cache_dir, seed=args.seed, threads=args.threads)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
