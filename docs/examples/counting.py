"""Example third-party probe: does the model continue a count ("3 4 5 6" -> " 7")? See docs/probes.md."""

import numpy as np
import torch

from icl_probe.probes.base import Pass, Probe, prompt_input_ids


def build_prompts(ctx):  # ctx: tokenizer, settings (defaults filled), seeds, this probe's own RNG stream
    n = ctx.settings["length"]
    sets = []
    for seed in ctx.seeds:
        starts = ctx.rng(seed).integers(0, 10 - n, size=ctx.settings["n_prompts"])
        sets.append({"seed": seed, "prompts": [
            {"input_ids": ctx.encode(" ".join(str(s + i) for i in range(n))), "target": ctx.encode(f" {s + n}")[-1]}
            for s in starts.tolist()]})
    return {"sets": sets}


def collect(lens, block, *, batch_size, pad_id):  # the model pass: final layer, last position, per seed
    out = []
    for s in block["sets"]:
        seqs, logp, correct = [p["input_ids"] for p in s["prompts"]], [], []
        targets = torch.tensor([p["target"] for p in s["prompts"]])
        for cap in lens.run(seqs, [[len(q) - 1] for q in seqs], layers=[lens.n_layers], batch_size=batch_size,
                            pad_id=pad_id):
            lp, ok = lens.target_logprob(cap.hidden[lens.n_layers][:, 0], targets[len(logp):][: len(cap.offsets)])
            logp += lp.tolist()
            correct += ok.float().tolist()
        out.append({"logp": np.array(logp), "correct": np.array(correct)})
    return out


def metric(logp, correct):  # pure: one seed's arrays -> numbers
    return {"count_acc": float(np.mean(correct)), "count_logp": float(np.mean(logp))}


PROBE = Probe(
    name="counting", summary="next number of a count, read at the final layer",
    settings={"length": {"type": "integer", "minimum": 2, "maximum": 8, "default": 4},
              "n_prompts": {"type": "integer", "minimum": 2, "default": 16}},
    build_prompts=build_prompts, sequences=prompt_input_ids,
    passes=(Pass("counting", collect, prompts="counting", layers="final", positions="last"),),
    metric=metric, scalars=("count_acc", "count_logp"), prompt_axes={"logp": 0, "correct": 0},
)
