"""Check a checkpoint's files on disk before a library parses them.

A sweep must never trust a half-written or corrupt file, and a damaged file
must not surface as a traceback deep inside safetensors or the tokenizers
library. :func:`check_snapshot` reads only what it needs to decide (JSON files,
safetensors headers and sizes, the pickle structure of ``.bin`` files without
their tensors) and raises :class:`~icl_probe.hub.errors.DamagedCheckpointError`
naming the file, what is wrong with it and how to get a good copy back.

- ``config.json``: present, a JSON object with a ``model_type`` that transformers implements
  itself when the config asks for the repository's own code (``auto_map``): that code never runs;
- the tokenizer: ``tokenizer.json`` (valid JSON) or the files of a slow tokenizer;
- the weights: every safetensors file is exactly as long as its header says
  (a truncated download is shorter), the shard index names shards that exist,
  ``.bin`` files load through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from icl_probe.hub.errors import DamagedCheckpointError, RemoteCodeRefusedError

# A tokenizer is complete with one of these sets of files (fast tokenizer first).
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"),
                       ("vocab.txt",), ("spiece.model",))
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
_HEADER_LIMIT = 100 * 2**20  # safetensors caps its JSON header at 100 MB


def snapshot_dir(repo_id: str, revision: str | None, cache_dir=None) -> Path | None:
    """The snapshot folder ``revision`` of ``repo_id`` resolves to in a Hub cache, or None if not there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    if isinstance(found, str):
        return Path(found).parent
    return None


def _what_to_do(snap: Path) -> str:
    """How to get a good copy, by where the snapshot lives: a workflow fetch folder
    (``resources/fetch/...``, holding ``fetched.json``), a mini-suite model (its build record
    beside ``snapshots/``), or any other Hub cache."""
    repo_dir = snap.parent.parent  # <cache>/models--org--name/snapshots/<commit>
    if (repo_dir.parent / "fetched.json").is_file():
        return (f"the fetched checkpoint is damaged: delete {repo_dir.parent} and run the workflow again; "
                "it fetches the checkpoint again")
    if (repo_dir / "icl_probe_build.json").is_file():
        return (f"the mini-suite model is damaged: delete {repo_dir} and run the workflow again; "
                "it builds the model again (deterministically) and probes its checkpoints")
    return (f"the checkpoint in {snap} is damaged: delete that folder and download the revision again "
            "(from_pretrained without local_files_only)")


def _read_json(path: Path, snap: Path, what: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedCheckpointError(f"{path.name} is not valid JSON ({err}), so the {what} cannot be read; "
                                     + _what_to_do(snap)) from None


def check_config(snap: Path) -> dict:
    """``config.json`` of ``snap``: present and a JSON object with a ``model_type``."""
    path = snap / "config.json"
    if not path.is_file():
        raise DamagedCheckpointError("config.json is missing; " + _what_to_do(snap))
    config = _read_json(path, snap, "model's architecture")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise DamagedCheckpointError("config.json has no 'model_type', so the architecture is unknown; "
                                     + _what_to_do(snap))
    from transformers import CONFIG_MAPPING

    if config.get("auto_map") and config["model_type"] not in CONFIG_MAPPING:
        raise RemoteCodeRefusedError(
            f"config.json asks for code from the checkpoint's repository (auto_map: {sorted(config['auto_map'])}) "
            f"to build model_type {config['model_type']!r}, which transformers does not implement; icl-probe never "
            "runs a checkpoint's code: use a checkpoint of a supported architecture (see icl_probe/arch.py)")
    return config


def check_tokenizer(snap: Path, *, missing_ok: bool = False) -> None:
    """The tokenizer files of ``snap`` are there (and ``tokenizer.json`` parses)."""
    present = {p.name for p in snap.iterdir()}
    if not missing_ok and not any(all(f in present for f in files) for files in TOKENIZER_FILE_SETS):
        wanted = " or ".join(" + ".join(files) for files in TOKENIZER_FILE_SETS)
        raise DamagedCheckpointError(
            f"no tokenizer files in {snap} (looked for {wanted}; found {', '.join(sorted(present)) or 'nothing'}); "
            "the checkpoint was copied without its tokenizer or the files were removed; " + _what_to_do(snap))
    if "tokenizer.json" in present:
        _read_json(snap / "tokenizer.json", snap, "tokenizer")


def check_safetensors(path: Path, snap: Path) -> None:
    """``path`` is a whole safetensors file: header readable, data exactly as long as it says."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise DamagedCheckpointError(f"{path.name} is truncated ({size} bytes, not even a header); "
                                         + _what_to_do(snap))
        (n,) = struct.unpack("<Q", head)
        if n > _HEADER_LIMIT or 8 + n > size:
            raise DamagedCheckpointError(
                f"{path.name} is truncated or not a safetensors file ({size} bytes, its header claims {n} bytes "
                "of metadata); " + _what_to_do(snap))
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise DamagedCheckpointError(f"{path.name} has an unreadable header; " + _what_to_do(snap)) from None
    ends = [int(t["data_offsets"][1]) for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    need = 8 + n + max(ends, default=0)
    if size != need:
        raise DamagedCheckpointError(
            f"{path.name} is {'truncated' if size < need else 'longer than its header says'}: "
            f"{size} bytes on disk, {need} bytes expected; " + _what_to_do(snap))


def weights_only_error(path: Path) -> str | None:
    """Why ``path`` does not load through torch's weights-only unpickler (tensors are not read),
    or None if it does."""
    import torch

    try:
        torch.load(path, map_location="meta", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means: not a safe, whole checkpoint
        return f"{path.name} cannot be loaded with torch.load(weights_only=True) ({type(err).__name__}: {err})"
    return None


def check_bin(path: Path, snap: Path) -> None:
    """A ``.bin`` file loads through torch's weights-only unpickler."""
    if problem := weights_only_error(path):
        raise DamagedCheckpointError(
            f"{problem}; it is truncated, corrupt or would run code when unpickled, and is never loaded "
            "any other way; " + _what_to_do(snap))


def check_weights(snap: Path, *, missing_ok: bool = False) -> list[Path]:
    """The weight files of ``snap``, each checked; returns them. ``missing_ok``: check only the files
    that are there (a download that failed midway leaves some out)."""
    for index_name, check in ((SAFETENSORS_INDEX, check_safetensors), (BIN_INDEX, check_bin)):
        index = snap / index_name
        if index.is_file():
            index_doc = _read_json(index, snap, "shard index")
            shards = sorted(set(index_doc.get("weight_map", {}).values())) if isinstance(index_doc, dict) else []
            missing = [s for s in shards if not (snap / s).is_file()]
            if missing_ok:
                shards = [s for s in shards if s not in missing]
            elif not shards or missing:
                raise DamagedCheckpointError(f"{index_name} names shards that are not there "
                                             f"({', '.join(missing) or 'none listed'}); " + _what_to_do(snap))
            for s in shards:
                check(snap / s, snap)
            return [snap / s for s in shards]
    for name, check in (("model.safetensors", check_safetensors), ("pytorch_model.bin", check_bin)):
        if (snap / name).is_file():
            check(snap / name, snap)
            return [snap / name]
    if missing_ok:
        return []
    raise DamagedCheckpointError(f"no weight files (model.safetensors, pytorch_model.bin or a shard index) in {snap}; "
                                 + _what_to_do(snap))


def check_snapshot(snap: str | os.PathLike, *, weights: bool = True, tokenizer: bool = True,
                   missing_ok: bool = False) -> None:
    """Raise :class:`DamagedCheckpointError` unless ``snap`` holds a whole config, tokenizer and weights
    (``missing_ok``: unless the files that are there are damaged)."""
    snap = Path(snap)
    check_config(snap)
    if tokenizer:
        check_tokenizer(snap, missing_ok=missing_ok)
    if weights:
        check_weights(snap, missing_ok=missing_ok)


def check_cached_checkpoint(repo_id: str, revision: str | None, cache_dir=None, *, weights: bool = True,
                            tokenizer: bool = True, required: bool = False) -> Path | None:
    """Check the snapshot of ``repo_id@revision`` in a Hub cache; return its folder.

    ``required``: the checkpoint must be whole in the cache (loading with ``local_files_only``);
    otherwise only the files already there are checked, and the rest is left to ``from_pretrained``
    to download (so a network error is not reported as a damaged checkpoint).
    """
    snap = snapshot_dir(repo_id, revision, cache_dir)
    if snap is None:
        if required:
            raise DamagedCheckpointError(
                f"{repo_id}@{revision} is not in the cache {cache_dir or '(default Hugging Face cache)'} "
                "(no refs/ entry or no config.json in its snapshot); fetch it first "
                "(in the workflow the fetch or build_minisuite job does this)")
        return None
    check_snapshot(snap, weights=weights, tokenizer=tokenizer, missing_ok=not required)
    return snap
