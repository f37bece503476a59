"""Peak memory of loading a sharded ``pytorch_model-*.bin`` checkpoint (pythia-12b's format).

Usage: python benchmarks/bin_load_memory.py [--dtype float32|bfloat16] [--file-dtype ...] [--repeat 3]

Writes a GPT-NeoX checkpoint as sharded .bin pickles in a Hub-cache layout, then, in a fresh
process per run, loads it the way a probe job does (``icl_probe.runner.load_checkpoint`` with
``local_files_only``: integrity checks, then ``from_pretrained`` at the configured dtype), reads
every weight once, and reports the peak RSS (sampled every 2 ms) above the interpreter's (the RSS
of the same process just before, after it loaded a tiny checkpoint the same way, so imports and
transformers' one-time loading costs count as interpreter) as a multiple of the weights' size. One copy of the weights is 1.0; 2.0 means a
second copy (an fp32 copy of a bf16 checkpoint, or a shard held twice) was made on the way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, sys, threading, time
import torch
torch.set_num_threads(1)
from icl_probe.runner import load_checkpoint

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

cache, dtype = sys.argv[1], sys.argv[2]
warm, _ = load_checkpoint("mini/warmup", "main", cache_dir=cache, local_files_only=True, dtype=dtype)
del warm
gc.collect()
base = rss()  # the interpreter: everything imported, transformers' one-time loading costs paid
samples, stop = [], threading.Event()

def sample():
    while not stop.is_set():
        samples.append(rss())
        time.sleep(0.002)

t = threading.Thread(target=sample, daemon=True)
t.start()
lm, _ = load_checkpoint("mini/sharded-bin", "main", cache_dir=cache, local_files_only=True, dtype=dtype)
with torch.no_grad():  # read every weight once, so mapped file pages count as resident
    total = sum(float(p.double().sum()) if p.numel() < 2_000_000 else float(p.sum()) for p in lm.parameters())
stop.set()
t.join()
weights = sum(p.numel() * p.element_size() for p in lm.parameters())
peak = max(samples + [rss()])
print(json.dumps({"base": base, "peak": peak, "weights": weights, "dtype": str(next(lm.parameters()).dtype),
                  "ratio": (peak - base) / weights, "n_samples": len(samples)}))
"""


def write_checkpoint(cache: Path, repo: str, file_dtype: str, *, vocab=8192, hidden=512, layers=8,
                     shard_bytes=40_000_000) -> int:
    """A GPT-NeoX checkpoint as ``pytorch_model-0000i-of-0000n.bin`` shards plus index, tokenizer and
    config, at ``refs/main`` of ``repo`` in the Hub cache ``cache``; returns the weights' bytes."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from icl_probe.minisuite.build import _add_snapshot, _set_ref
    from icl_probe.minisuite.tokenizer import build_tokenizer

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=8, intermediate_size=4 * hidden, max_position_embeddings=256)
    model = GPTNeoXForCausalLM(cfg).to(getattr(torch, file_dtype))
    work = Path(tempfile.mkdtemp(dir=cache))
    model.config.save_pretrained(work)
    build_tokenizer().save_pretrained(work)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        if cur and size + v.numel() * v.element_size() > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += v.numel() * v.element_size()
    shards.append(cur)
    weight_map = {}
    for i, sd in enumerate(shards, 1):
        name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(sd, work / name)
        weight_map.update(dict.fromkeys(sd, name))
    (work / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    org, name = repo.split("/")
    commit = _add_snapshot(cache / f"models--{org}--{name}", {p.name: p for p in work.iterdir()})
    _set_ref(cache / f"models--{org}--{name}", "main", commit)
    return sum(v.numel() * v.element_size() for v in state.values())


def measure(cache: Path, dtype: str) -> dict:
    """One fresh process: RSS sampled every 2 ms while the sharded checkpoint loads and every weight
    is read, against the RSS just before (``base``); ``ratio`` = (peak - base) / weights."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(cache), dtype], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(root: Path, file_dtype: str) -> int:
    write_checkpoint(root, "mini/warmup", file_dtype, vocab=512, hidden=64, layers=2)
    return write_checkpoint(root, "mini/sharded-bin", file_dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", help="the configured runtime.dtype")
    ap.add_argument("--file-dtype", default=None, help="the checkpoint's dtype on disk (default: --dtype)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare(root, args.file_dtype or args.dtype)
        runs = [measure(root, args.dtype) for _ in range(args.repeat)]
    ratios = [r["ratio"] for r in runs]
    print(f"file {args.file_dtype or args.dtype}, loaded as {runs[0]['dtype']}: weights {runs[0]['weights'] / 1e6:.0f} MB, "
          f"peak RSS above interpreter = {statistics.median(ratios):.2f} x weights (median of {len(runs)}: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
