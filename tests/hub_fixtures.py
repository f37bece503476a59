"""Tiny Hub-cache fixtures for the checkpoint-source tests: seeded GPT-NeoX models under refs/snapshots."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

VOCAB = 64


def _tokenizer_files(dest: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "[UNK]": 1}
    for i in range(VOCAB - len(vocab)):
        vocab[f"w{i}"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="[UNK]")
    fast.save_pretrained(dest)


def _model_files(dest: Path, seed: int, max_shard_size: str | None = None) -> None:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, eos_token_id=0, bos_token_id=0)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    GPTNeoXForCausalLM(cfg).save_pretrained(dest, **kw)


def build_hub_cache(root: str | Path, repo_id: str, revisions: dict[str, int | str], *,
                    main: str | None = None, tokenizer: bool = True,
                    max_shard_size: str | None = None) -> dict[str, str]:
    """Write ``repo_id`` into the Hub cache ``root``; return ``{branch: commit}``.

    ``revisions`` maps a branch to a seed (fresh weights) or to ``"=other"`` (serve the same
    weight file as branch ``other``, under a commit of its own). ``main`` adds a ``main`` ref
    pointing at that branch's commit. ``max_shard_size`` (e.g. ``"50KB"``) writes sharded
    safetensors with an index, as the large Pythia and OLMo-2 checkpoints are.
    """
    root = Path(root)
    org, name = repo_id.split("/")
    repo = root / f"models--{org}--{name}"
    built: dict[str, Path] = {}
    commits: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tok"
        if tokenizer:
            _tokenizer_files(tok_dir)
        fresh_first = sorted(revisions.items(), key=lambda kv: isinstance(kv[1], str))
        for branch, how in fresh_first:
            commit = hashlib.sha1(f"{repo_id}@{branch}".encode()).hexdigest()
            snap = repo / "snapshots" / commit
            snap.mkdir(parents=True, exist_ok=True)
            if isinstance(how, str) and how.startswith("="):
                src = built[how[1:]]
            else:
                src = Path(tmp) / f"seed{how}"
                if not src.exists():
                    _model_files(src, int(how), max_shard_size)
            built[branch] = src
            for f in src.iterdir():
                shutil.copyfile(f, snap / f.name)
            if tokenizer:
                for f in tok_dir.iterdir():
                    shutil.copyfile(f, snap / f.name)
            (repo / "refs").mkdir(parents=True, exist_ok=True)
            (repo / "refs" / branch).write_text(commit)
            commits[branch] = commit
    if main is not None:
        (repo / "refs" / "main").write_text(commits[main])
    return commits


def checkpoint_bytes(root: str | Path, repo_id: str, commit: str) -> int:
    """Bytes of the config + weight files of one snapshot (what a fetch downloads)."""
    org, name = repo_id.split("/")
    snap = Path(root) / f"models--{org}--{name}" / "snapshots" / commit
    keep = ("config.json", "generation_config.json", "model.safetensors")
    return sum(p.stat().st_size for p in snap.iterdir() if p.name in keep)


def build_minisuite_repo(root: str | Path, branch: str = "main", *, shape: str = "pythia-s") -> tuple[Path, str]:
    """A one-revision Hub-cache repo ``mini/{shape}`` under ``root``: a seeded model of that
    mini-suite shape with the mini-suite tokenizer (digits are single tokens, so every probe's
    prompts build), at ``refs/{branch}``; returns (repo folder, commit)."""
    import torch
    from transformers import AutoModelForCausalLM

    from icl_probe.minisuite.build import _add_snapshot, _set_ref, make_config
    from icl_probe.minisuite.tokenizer import build_tokenizer

    root = Path(root)
    work = Path(tempfile.mkdtemp(dir=root.parent if root.parent.exists() else None))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(make_config(shape)).save_pretrained(work)
    build_tokenizer().save_pretrained(work)
    repo = root / f"models--mini--{shape}"
    commit = _add_snapshot(repo, {p.name: p for p in work.iterdir()})
    _set_ref(repo, branch, commit)
    return repo, commit
