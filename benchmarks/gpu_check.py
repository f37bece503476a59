"""GPU readiness: probe results on a CUDA device against CPU fp32, and probe pass / floor and load times.

Run by ``benchmarks/gpu.sh`` on a machine with a GPU (one prepared script, under 8 minutes for
the 160m and 1b shapes); on this CPU-only machine ``--device cpu --shapes tiny`` is its smoke test.

Per shape (seeded random Pythia-shape checkpoint from ``benchmarks/run.py``, default probe
settings with ``--n-prompts`` GD-readout prompts and induction sequences per seed, to keep the
CPU reference short):

* reference: our GD-readout and induction collectors on the CPU in fp32;
* on ``--device`` in fp32 (TF32 off) and in bf16: the same quantities, compared with the
  reference: max abs difference of the per-layer mean_err (per seed), error_reduction and mean
  surprisal per layer, against TOL (fp32: 1e-4 as for the peers; bf16: 5e-2 on mean_err and
  error_reduction (the y scale is 0-9), 5e-2 nats on surprisal);
* times on the device (synchronised, medians of ``--repeats``): ``load_checkpoint`` (model +
  tokenizer, to the device at the dtype), the probe pass (``probe_checkpoint`` with all four
  probes, loaded model) and the floor (a backbone-only forward over the same padded batches:
  no LM head, no hidden states kept), per dtype.

Writes ``benchmarks/_work/gpu-check.json`` and prints a markdown table for RESULTS.md.
Exit status 1 if any comparison is outside its tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import run as bench  # noqa: E402

bench.SHAPES.setdefault(  # config.json of EleutherAI/pythia-1b
    "1b", dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=8, intermediate_size=8192))
TOL = {"float32": {"mean_err": 1e-4, "error_reduction": 1e-4, "surprisal": 1e-4},
       "bfloat16": {"mean_err": 5e-2, "error_reduction": 5e-2, "surprisal": 5e-2}}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def summary(arrays: dict, prompts: dict) -> dict:
    """Per-seed per-layer mean_err, error_reduction, per-layer mean surprisal (float64)."""
    cuts = np.cumsum([len(s["prompts"]) for s in prompts["gd_readout"]["sets"]])[:-1]
    mean_err = np.stack([np.abs(ys[None, :] - yh).mean(1) for yh, ys in
                         zip(np.split(arrays["y_hat"], cuts, 1), np.split(arrays["y_star"], cuts))])
    icuts = np.cumsum([len(s["sequences"]) for s in prompts["induction"]["sets"]])[:-1]
    surprisal = np.stack([x.mean(1) for x in np.split(arrays["surprisal"], icuts, 1)])
    return {"mean_err": mean_err, "error_reduction": mean_err[:, 0] - mean_err[:, -1], "surprisal": surprisal}


def timed(fn, device, repeats):
    out, secs = None, []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        secs.append(time.perf_counter() - t)
    return out, secs


def one_shape(shape: str, device: str, repeats: int, n_prompts: int, cache: Path, log) -> dict:
    from icl_probe.runner import load_checkpoint, load_prompt_files, make_prompts, probe_checkpoint

    settings = bench.default_settings()["probes"]
    settings["gd_readout"] = {**settings.get("gd_readout", {}), "n_prompts": n_prompts}
    settings["induction"] = {**settings.get("induction", {}), "n_sequences": n_prompts}
    repo_id, _ = bench.build_checkpoint(shape, cache)
    prompts_path = bench.WORK / f"prompts-gpu-{shape}-{n_prompts}"
    make_prompts(repo_id, bench.REVISION, prompts_path, settings, cache_dir=str(cache), local_files_only=True)
    prompts = load_prompt_files(prompts_path)
    kw = dict(cache_dir=str(cache), local_files_only=True)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    t = time.perf_counter()
    lm, tok = load_checkpoint(repo_id, bench.REVISION, **kw)
    ref = summary(bench.ours_gd_induction(lm, tok, prompts, settings), prompts)
    log(shape, f"CPU fp32 reference in {time.perf_counter() - t:.1f} s")
    del lm
    row = {"shape": shape, "device": device, "n_prompts": n_prompts, "dtypes": {}}
    for dtype in ("float32", "bfloat16"):
        (lm, tok), t_load = timed(lambda: load_checkpoint(repo_id, bench.REVISION, device=device, dtype=dtype, **kw),
                                  device, repeats)
        got = summary(bench.ours_gd_induction(lm, tok, prompts, settings), prompts)
        diffs = {k: float(np.abs(got[k] - ref[k]).max()) for k in ref}
        ok = all(diffs[k] <= TOL[dtype][k] for k in diffs)
        batches = [(p, *(x.to(device) for x in rest)) for p, *rest in bench.all_batches(prompts, settings,
                                                                                         tok.pad_token_id)]
        with tempfile.TemporaryDirectory() as out:
            def probe_pass():
                return probe_checkpoint(repo_id, bench.REVISION, Path(out), settings, prompts_path, loaded=(lm, tok),
                                        device=device, dtype=dtype)

            probe_pass()  # warm-up (kernels, allocator)
            _, t_pass = timed(probe_pass, device, repeats)
        _, t_floor = timed(lambda: bench.bare_forward(lm, batches, backbone_only=True), device, repeats)
        row["dtypes"][dtype] = {
            "diffs": diffs, "tolerance": TOL[dtype], "ok": ok,
            "load_s": t_load, "probe_pass_s": t_pass, "floor_s": t_floor,
            "probe_over_floor": statistics.median(t_pass) / statistics.median(t_floor),
            "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        }
        log(shape, dtype, json.dumps(row["dtypes"][dtype]))
        del lm
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["160m", "1b"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-prompts", type=int, default=32, help="GD-readout prompts and induction sequences per seed")
    ap.add_argument("--out", default=str(bench.WORK / "gpu-check.json"))
    args = ap.parse_args(argv)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: run this on the GPU machine (benchmarks/gpu.sh)")
    torch.set_num_threads(os.cpu_count() or 1)
    info = bench.machine()
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    rows = [one_shape(s, args.device, args.repeats, args.n_prompts, bench.WORK / "hub", log) for s in args.shapes]
    Path(args.out).write_text(json.dumps({"machine": info, "argv": sys.argv[1:], "rows": rows}, indent=1,
                                         default=str))
    print("| shape | dtype | max abs diff vs CPU fp32 (mean_err / ER / surprisal) | within tolerance | load s "
          "| probe pass s | floor s | pass / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for dtype, d in r["dtypes"].items():
            diffs = " / ".join(f"{d['diffs'][k]:.1e}" for k in ("mean_err", "error_reduction", "surprisal"))
            print(f"| {r['shape']} | {dtype} | {diffs} | {'yes' if d['ok'] else 'NO'} | "
                  f"{statistics.median(d['load_s']):.2f} | {statistics.median(d['probe_pass_s']):.2f} | "
                  f"{statistics.median(d['floor_s']):.2f} | {d['probe_over_floor']:.2f} |")
    return 0 if all(d["ok"] for r in rows for d in r["dtypes"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
