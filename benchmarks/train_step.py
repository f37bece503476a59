"""Where a mini-suite build's seconds go: one training step by phase, Python overhead, threads.

Usage (repository root, project venv active):

    python benchmarks/train_step.py [--model pythia-m] [--steps 200] [--threads 1 2]

For the model's recipe (``icl_probe.minisuite.build.MODELS``), the same model, optimizer and
batches as the build: ``--steps`` steps timed by phase (forward with loss, backward, AdamW
step) at each thread count, then the same steps under cProfile at the first thread count, split
into the own time of torch's C functions (compute) and of Python functions (overhead:
transformers' module code, the optimizer's Python loop, autograd bookkeeping in Python); and
one checkpoint's extra cost (the held-out evaluations and ``save_pretrained``) times the
schedule's checkpoints. Prints a markdown table; the build's own total is its
``logs/benchmarks/minisuite/<model>.tsv`` in a default run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time

import torch


def setup(name: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    from icl_probe.minisuite import build, corpus

    m = build.MODELS[name]
    data = torch.from_numpy(corpus.corpus(seed, m.final_step * m.batch_size, m.seq_len, m.mix))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build.make_config(name), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=m.lr, betas=m.betas, eps=1e-8, weight_decay=m.weight_decay)
    model.train()
    return m, data, model, opt


def steps(m, data, model, opt, n: int, start: int = 0, split: dict | None = None) -> float:
    t0 = time.perf_counter()
    for step in range(start, start + n):
        batch = data[step * m.batch_size:(step + 1) * m.batch_size]
        t = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if split is not None:
            for k, v in (("forward + loss", t1 - t), ("backward", t2 - t1), ("optimizer step", t3 - t2)):
                split.setdefault(k, []).append(v)
    return time.perf_counter() - t0


def checkpoint_cost(name: str, model, seed: int = 0) -> float:
    from icl_probe.minisuite import build, corpus

    held_ind = torch.from_numpy(corpus.heldout_induction(seed))
    gd_ids, gd_y = (torch.from_numpy(a) for a in corpus.heldout_gd(seed))
    digit_ids = [build.vocabulary().index(str(d)) for d in range(10)]
    t = time.perf_counter()
    model.eval()
    build.induction_loss(model, held_ind)
    build.gd_metrics(model, gd_ids, gd_y, digit_ids)
    model.train()
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
    return time.perf_counter() - t


def main(argv=None) -> int:
    from icl_probe.minisuite import build

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pythia-m", choices=sorted(build.MODELS))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    import os

    load0 = os.getloadavg()
    m, data, model, opt = setup(args.model)
    steps(m, data, model, opt, 20)  # warm-up
    rows = []
    for th in args.threads:
        torch.set_num_threads(th)
        split: dict = {}
        total = steps(m, data, model, opt, args.steps, start=20, split=split)
        rows.append((th, total / args.steps, {k: statistics.median(v) for k, v in split.items()}))
    torch.set_num_threads(args.threads[0])
    prof = cProfile.Profile()
    prof.enable()
    steps(m, data, model, opt, args.steps, start=20)
    prof.disable()
    st = pstats.Stats(prof)
    c_own = sum(v[2] for k, v in st.stats.items() if k[0] == "~")  # built-ins: torch's C functions, numpy
    py_own = sum(v[2] for k, v in st.stats.items() if k[0] != "~")
    top = sorted(((v[2], f"{os.path.basename(k[0])}:{k[1]}({k[2]})") for k, v in st.stats.items()), reverse=True)[:8]
    ckpt = checkpoint_cost(args.model, model)
    n_ckpt = len(build.schedule(m.final_step, m.interval))
    print(f"model {args.model}: {m.final_step} steps, batch {m.batch_size} x {m.seq_len}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; load average {load0} at start, "
          f"{os.getloadavg()} at end\n")
    print("| threads | s per step | forward + loss | backward | optimizer step | whole build's steps (est.) |")
    print("|---|---|---|---|---|---|")
    for th, per, sp in rows:
        print(f"| {th} | {per * 1e3:.1f} ms | {sp['forward + loss'] * 1e3:.1f} ms | {sp['backward'] * 1e3:.1f} ms | "
              f"{sp['optimizer step'] * 1e3:.1f} ms | {per * m.final_step:.0f} s |")
    share = py_own / (py_own + c_own)
    print(f"\nUnder cProfile ({args.threads[0]} thread): own time in Python functions {py_own:.2f} s, in built-in "
          f"(C) functions {c_own:.2f} s: Python overhead {100 * share:.0f} % (cProfile inflates Python calls).")
    print("Top own time: " + "; ".join(f"{name} {t:.2f} s" for t, name in top))
    print(f"\nOne checkpoint's evaluations + save_pretrained: {ckpt:.2f} s x {n_ckpt} checkpoints = {ckpt * n_ckpt:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
