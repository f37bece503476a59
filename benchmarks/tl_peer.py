"""Ours versus the TransformerLens loop researchers write, per checkpoint, load included.

Usage (repository root, project venv active, after ``pip install "transformer-lens==3.9.0"``):

    python benchmarks/tl_peer.py --shapes 14m 70m --repeats 3 [--out benchmarks/_work/tl-peer.json]

Per checkpoint and shape, with the same seeded random Pythia-shape checkpoint from a local Hub
cache (``benchmarks/run.py``'s, offline) and the default prompt sets of gd_readout and induction:

* **ours**: ``runner.load_checkpoint`` then ``probe_checkpoint`` with those two probes (passes,
  metrics, bootstrap, JSON written);
* **theirs**: ``HookedTransformer.from_pretrained("EleutherAI/pythia-<shape>",
  checkpoint_value=143000)`` (the loop's load: the Hugging Face model, then TransformerLens's
  conversion and weight processing), then one ``run_with_cache`` per batch and the logit lens
  over the cache (``ln_final`` and ``unembed`` at the positions read) for the same per-layer
  y_hat and surprisal. The loop does no bootstrap: it computes less than ours.

Both run in this process after their imports (neither pays its import per checkpoint). The
repeats are interleaved. Before any time is reported the two sides' per-layer quantities are
compared (``run.compare_peer``: atol 1e-4 in fp32). The checkpoint is the one ``run.py`` writes
as ``bench/pythia-<shape>``; it is also linked into the cache as ``EleutherAI/pythia-<shape>`` at
``step143000`` and ``main``, which is where TransformerLens looks for it.
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
WORK = HERE / "_work"
CACHE = WORK / "hub"
# TransformerLens reads the Hub cache through huggingface_hub's defaults: set before any import
os.environ.setdefault("HF_HUB_CACHE", str(CACHE))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import run as bench  # noqa: E402

PIN = "transformer-lens==3.9.0"
SHAPES = {  # config.json of EleutherAI/pythia-14m and -70m
    "14m": dict(num_hidden_layers=6, hidden_size=128, num_attention_heads=4, intermediate_size=512),
    "70m": dict(num_hidden_layers=6, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
}
bench.SHAPES.update(SHAPES)
PROBES = ["gd_readout", "induction"]


def link_official(shape: str, snap: Path) -> str:
    """``EleutherAI/pythia-<shape>`` in the cache: refs main and step143000 to the bench snapshot."""
    name = f"EleutherAI/pythia-{shape}"
    repo = CACHE / f"models--EleutherAI--pythia-{shape}"
    commit = snap.name
    (repo / "snapshots").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    link = repo / "snapshots" / commit
    if not link.exists():
        link.symlink_to(snap, target_is_directory=True)
    for ref in ("main", bench.REVISION):
        (repo / "refs" / ref).write_text(commit)
    return name


def theirs_load(name: str):
    from transformer_lens import HookedTransformer

    step = int(bench.REVISION.removeprefix("step"))
    return HookedTransformer.from_pretrained(name, checkpoint_value=step, device="cpu")  # its own tokenizer too


def theirs_passes(model, prompts: dict, batch_size: int, split: dict | None = None) -> dict:
    """The loop: run_with_cache per batch, every layer's residual stream through ln_final and
    unembed at the positions read (the final token for the GD readout, the second block's
    positions for induction). ``split``, if given, accumulates seconds in ``run_with_cache``
    and in the lens (everything after it)."""
    split = {} if split is None else split

    def timed(key, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        split[key] = split.get(key, 0.0) + time.perf_counter() - t
        return out
    digits = prompts["gd_readout"]["digit_ids"]
    d = torch.arange(10, dtype=torch.float32)

    def lens(cache, pos):
        resid = cache.accumulated_resid(apply_ln=False)[:, :, pos]  # [L+1, B, P, d]
        flat = resid.reshape(-1, *resid.shape[2:]) if resid.dim() == 4 else resid.reshape(-1, 1, resid.shape[-1])
        logits = model.unembed(model.ln_final(flat))
        return logits.reshape(resid.shape[0], resid.shape[1], *logits.shape[1:])

    gd = [p for s in prompts["gd_readout"]["sets"] for p in s["prompts"]]
    y_hat = []
    with torch.inference_mode():
        for i in range(0, len(gd), batch_size):
            ids = torch.tensor([p["input_ids"] for p in gd[i:i + batch_size]])
            _, cache = timed("run_with_cache", model.run_with_cache, ids)
            logits = timed("lens", lens, cache, -1)[:, :, 0, digits]  # [L+1, B, 10]
            y_hat.append(logits.softmax(-1) @ d)
    m = prompts["induction"]["block_len"]
    q = torch.arange(m, 2 * m - 1)
    seqs = [x for s in prompts["induction"]["sets"] for x in s["sequences"]]
    surprisal = []
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            ids = torch.tensor(seqs[i:i + batch_size])
            _, cache = timed("run_with_cache", model.run_with_cache, ids)
            logp = timed("lens", lambda: lens(cache, q).log_softmax(-1))  # [L+1, B, m-1, V]
            target = ids[:, q + 1][None, :, :, None].expand(logp.shape[0], -1, -1, 1)
            surprisal.append(-logp.gather(-1, target)[..., 0].mean(-1))
    return {"y_hat": torch.cat(y_hat, 1).double().numpy(),
            "y_star": np.array([p["y_star"] for p in gd], dtype=np.float64),
            "surprisal": torch.cat(surprisal, 1).double().numpy()}


def one_shape(shape: str, repeats: int, log) -> dict:
    from icl_probe.runner import load_checkpoint, load_prompt_files, make_prompts, probe_checkpoint

    settings = bench.default_settings()["probes"]
    settings = {**settings, "enabled": PROBES}
    repo_id, snap = bench.build_checkpoint(shape, CACHE)
    name = link_official(shape, snap)
    prompts_path = WORK / f"prompts-tl-{shape}"
    make_prompts(repo_id, bench.REVISION, prompts_path, settings, cache_dir=str(CACHE), local_files_only=True)
    prompts = load_prompt_files(prompts_path)
    bs = int(settings["batch_size"])

    def ours():
        lm, tok = load_checkpoint(repo_id, bench.REVISION, cache_dir=str(CACHE), local_files_only=True)
        with tempfile.TemporaryDirectory() as out:
            probe_checkpoint(repo_id, bench.REVISION, Path(out), settings, prompts_path, loaded=(lm, tok),
                             device="cpu", dtype="float32")
        return lm, tok

    def theirs():
        model = theirs_load(name)
        return model, theirs_passes(model, prompts, bs)

    # the check, once, before any timing (also the warm-up of both)
    lm, tok = ours()
    model, peer = theirs()
    check = bench.compare_peer(bench.ours_gd_induction(lm, tok, prompts, settings), peer, prompts)
    log(shape, "agreement", check)
    if not check["ok"]:
        raise SystemExit(f"{shape}: TransformerLens and icl-probe disagree beyond {bench.PEER_ATOL}: {check}")
    del lm, model
    t_ours, t_theirs, t_theirs_load, splits = [], [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        model = theirs_load(name)
        t_theirs_load.append(time.perf_counter() - t)
        splits.append({})
        theirs_passes(model, prompts, bs, splits[-1])
        t_theirs.append(time.perf_counter() - t)
        del model
        log(shape, f"repeat {r + 1}: ours {t_ours[-1]:.2f} s, theirs {t_theirs[-1]:.2f} s "
                   f"(load {t_theirs_load[-1]:.2f} s)")
    lm, _ = load_checkpoint(repo_id, bench.REVISION, cache_dir=str(CACHE), local_files_only=True)
    n_tokens = {p: sum(len(x) for s in prompts[p]["sets"] for x in (s.get("sequences") or
                                                                    [q["input_ids"] for q in s["prompts"]]))
                for p in PROBES}
    return {"shape": shape, "params": sum(p.numel() for p in lm.parameters()), "tokens": n_tokens,
            "agreement": check, "ours_s": t_ours, "theirs_s": t_theirs, "theirs_load_s": t_theirs_load,
            "ours_median_s": statistics.median(t_ours), "theirs_median_s": statistics.median(t_theirs),
            "theirs_load_median_s": statistics.median(t_theirs_load),
            "theirs_split_median_s": {k: statistics.median(x[k] for x in splits) for k in splits[0]},
            "ratio_ours_over_theirs": statistics.median(t_ours) / statistics.median(t_theirs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["14m", "70m"], choices=[*SHAPES, "160m", "410m"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(WORK / "tl-peer.json"))
    args = ap.parse_args(argv)
    import transformer_lens  # noqa: F401 - fail early if the peer is not installed
    from importlib.metadata import version

    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    info = bench.machine()
    info["transformer_lens"] = version("transformer-lens")
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for shape in args.shapes:
        rows.append(one_shape(shape, args.repeats, log))
        info["load_at_end"] = os.getloadavg()
        Path(args.out).write_text(json.dumps({"machine": info, "argv": sys.argv[1:], "rows": rows}, indent=1,
                                             default=str))
    print("| shape | params | ours: load + gd_readout + induction (s) | TransformerLens: from_pretrained + "
          "run_with_cache + lens (s) | of which from_pretrained / run_with_cache / lens (s) | ours / theirs | agreement (max abs diff) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        agree = max(v for k, v in r["agreement"].items() if k != "ok")
        print(f"| {r['shape']} | {r['params'] / 1e6:.1f}M | {r['ours_median_s']:.2f} [{min(r['ours_s']):.2f}-"
              f"{max(r['ours_s']):.2f}] | {r['theirs_median_s']:.2f} [{min(r['theirs_s']):.2f}-"
              f"{max(r['theirs_s']):.2f}] | {r['theirs_load_median_s']:.2f} / "
              f"{r['theirs_split_median_s']['run_with_cache']:.2f} / {r['theirs_split_median_s']['lens']:.2f} | {r['ratio_ours_over_theirs']:.2f} | "
              f"{agree:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
