"""Probe pass / compute floor, per probe and in total (issue 16 item 1).

Usage (repository root, project venv active):

    python benchmarks/floor.py [--shape 160m] [--repeats 1]

The floor of a probe is what its spec cannot avoid: the backbone forward over its batches (no LM
head over every position) plus exactly the lens rows it reads, as matmuls against the unembedding:

* gd_readout: every layer's residual at the final token through the final norm and the 10 digit
  rows of W_U;
* induction: every layer's residual at the m-1 query positions of the second block through the
  final norm and the full-vocabulary W_U, logsumexp and the target's logit; the final layer at the
  m-1 first-block positions likewise (loss_first);
* associative_recall: the final layer at the query position, full vocabulary (argmax and target);
* attention_sinks: none (the backbone alone; the weights on position 0 come with attention).

Measured against it: the probe pass (``probe_checkpoint`` with the default settings, all four
probes, loaded model: passes, metrics, bootstrap, JSON), per probe from its ``timing.seconds``.
Same seeded random Pythia-shape checkpoint and prompts as ``benchmarks/run.py``; repeats
interleaved; medians. Writes ``benchmarks/_work/floor-<shape>.json`` and prints a markdown table.
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

import torch  # noqa: E402

import run as bench  # noqa: E402


def floor_pass(lm, batches, prompts) -> dict[str, float]:
    """Seconds per probe of the backbone over its batches plus the lens rows it reads."""
    net, w_u = lm.gpt_neox, lm.get_output_embeddings().weight
    norm = net.final_layer_norm
    digits = torch.tensor(prompts["gd_readout"]["digit_ids"])
    m = int(prompts["induction"]["block_len"])
    q = torch.arange(m, 2 * m - 1)
    first = torch.arange(0, m - 1)
    secs: dict[str, float] = {}
    with torch.inference_mode():
        for probe, ids, mask, pos in batches:
            t = time.perf_counter()
            hidden = probe in ("gd_readout", "induction")
            out = net(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=hidden,
                      use_cache=False)
            rows = torch.arange(ids.shape[0])
            last = mask.sum(1) - 1
            if probe == "gd_readout":
                h = torch.stack([x[rows, last] for x in out.hidden_states])  # [L+1, B, d]
                (norm(h) @ w_u[digits].T).softmax(-1)
            elif probe == "induction":
                h = torch.stack([x[:, q] for x in out.hidden_states])  # [L+1, B, m-1, d]
                logits = norm(h) @ w_u.T
                logits.logsumexp(-1) - logits.gather(-1, ids[:, q + 1][None, ..., None].expand(
                    logits.shape[0], -1, -1, 1))[..., 0]
                lf = norm(out.hidden_states[-1][:, first]) @ w_u.T
                lf.logsumexp(-1)
            elif probe == "associative_recall":
                logits = norm(out.last_hidden_state[rows, last]) @ w_u.T
                logits.argmax(-1), logits.log_softmax(-1)
            secs[probe] = secs.get(probe, 0.0) + time.perf_counter() - t
    return secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="160m", choices=sorted(bench.SHAPES))
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    from transformers.utils import logging as hf_logging

    from icl_probe.runner import load_checkpoint, load_prompt_files, make_prompts

    hf_logging.disable_progress_bar()
    torch.set_num_threads(os.cpu_count() or 1)
    cache = bench.WORK / "hub"
    settings = bench.default_settings()["probes"]
    repo_id, _ = bench.build_checkpoint(args.shape, cache)
    prompts_path = bench.WORK / f"prompts-{args.shape}"
    make_prompts(repo_id, bench.REVISION, prompts_path, settings, cache_dir=str(cache), local_files_only=True)
    prompts = load_prompt_files(prompts_path)
    lm, tok = load_checkpoint(repo_id, bench.REVISION, cache_dir=str(cache), local_files_only=True)
    batches = bench.all_batches(prompts, settings, tok.pad_token_id)
    load0 = os.getloadavg()
    probe_s: dict[str, list[float]] = {}
    floor_s: dict[str, list[float]] = {}
    floor_pass(lm, batches[:2], prompts)  # warm-up
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            paths = bench.probe_pass(lm, tok, repo_id, settings, prompts_path, Path(out))
            for probe, path in paths.items():
                probe_s.setdefault(probe, []).append(json.loads(Path(path).read_text())["timing"]["seconds"])
        for probe, s in floor_pass(lm, batches, prompts).items():
            floor_s.setdefault(probe, []).append(s)
        print(f"repeat {r + 1}: probe {sum(v[-1] for v in probe_s.values()):.1f} s, "
              f"floor {sum(v[-1] for v in floor_s.values()):.1f} s", file=sys.stderr, flush=True)
    med = {p: (statistics.median(probe_s[p]), statistics.median(floor_s[p])) for p in settings["enabled"]}
    total = (sum(a for a, _ in med.values()), sum(b for _, b in med.values()))
    res = {"shape": args.shape, "repeats": args.repeats, "probe_s": probe_s, "floor_s": floor_s,
           "load_start": load0, "load_end": os.getloadavg(), "machine": bench.machine()}
    (bench.WORK / f"floor-{args.shape}.json").write_text(json.dumps(res, indent=1, default=str))
    print("| probe | probe pass s | floor s | probe / floor |\n|---|---|---|---|")
    for p, (a, b) in med.items():
        print(f"| {p} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    print(f"| **total** | {total[0]:.1f} | {total[1]:.1f} | **{total[0] / total[1]:.2f}** |")
    print(f"\nload average {load0} at start, {res['load_end']} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
