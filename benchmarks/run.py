"""Benchmark: the per-checkpoint probe cost beside a bare forward pass and a peer library.

Run by hand (not a test), from the repository root::

    python benchmarks/run.py                 # Pythia-160M shape, 3 repeats, writes benchmarks/RESULTS.md
    python benchmarks/run.py --shape 410m --repeats 5
    python benchmarks/run.py --shape tiny --repeats 1 --out /tmp/r.md   # a quick smoke run

What it measures, side by side on this machine (medians of ``--repeats`` runs):

1. A GPT-NeoX model of the Pythia shape with seeded random weights, written as a
   Hugging Face Hub cache under ``benchmarks/_work/`` (gitignored), with a
   word-level tokenizer (digits 0-9 are single tokens); prompts are made from it
   with ``icl_probe.runner.make_prompts`` and the default probe settings.
2. Probe overhead: our full per-checkpoint probe pass (``probe_checkpoint`` with the
   model already loaded: all four probes, default settings, JSON written) / bare
   batched forward passes over the same token batches (same batch size, same
   padding, ``inference_mode``, no hidden states or attentions requested).
3. Peer ratio: the GD readout (per-layer y_hat, mean_err, error_reduction) and the
   induction surprisal per layer computed with nnsight (pinned: ``PEER_PIN``),
   written as a notebook user would, checked against ours (``PEER_ATOL``, fp32),
   and its time / ours for those two probes.
4. Load ratio: ``from_pretrained`` (weights + model construction) / reading the
   safetensors bytes from disk; both warm (the page cache cannot be dropped here).
5. Scale: wall time of ``snakemake -n`` for 10 Pythia models x 154 recorded
   revisions, and the peak resident memory of one ``icl-probe probe`` job / weight size.

Only this file's functions touch the package's internals (the probe registry,
``Lens``, ``probe_checkpoint(loaded=...)``); nothing here changes the package.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
PEER_PIN = "nnsight==0.8.1"
PEER_ATOL = 1e-4  # fp32, on y_hat / mean_err / error_reduction / surprisal
REVISION = "step143000"
SEED = 0

# Pythia shapes (config.json of EleutherAI/pythia-*; random weights here).
SHAPES = {
    "160m": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "410m": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
    "tiny": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256),  # smoke only
}
COMMON = dict(vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000,
              use_parallel_residual=True, tie_word_embeddings=False, layer_norm_eps=1e-5,
              hidden_act="gelu", bos_token_id=0, eos_token_id=0)
TOKENIZER_SIZE = 50277  # like Pythia's tokenizer: fewer entries than the padded embedding


# ----------------------------------------------------------------------------- helpers
def median(xs):
    return statistics.median(xs)


def timed(fn):
    gc.collect()
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def fmt_s(xs):
    return f"{median(xs):.2f} s" + (f" [{min(xs):.2f}-{max(xs):.2f}]" if len(xs) > 1 else "")


def machine() -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, AttributeError):
        pass
    import transformers

    try:
        import nnsight

        peer = nnsight.__version__
    except ImportError:
        peer = "not installed"
    try:
        import snakemake

        smk = snakemake.__version__
    except (ImportError, AttributeError):
        smk = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "ram": mem,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "nnsight": peer, "snakemake": smk,
            "load_at_start": os.getloadavg()}


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "icl_probe"], cwd=REPO, capture_output=True,
                               text=True).stdout
        return head.strip() + (" + uncommitted changes in icl_probe/" if dirty.strip() else "")
    except OSError:
        return "?"


# ----------------------------------------------------------------------------- 1. model + tokenizer
def build_tokenizer(size: int = TOKENIZER_SIZE):
    """Word-level tokenizer: ``<|endoftext|>``, digits 0-9, ``->``, newline, then words ``w00000``..."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    vocab = [eos, *[str(d) for d in range(10)], "->", "\n"]
    vocab += [f"w{i:05d}" for i in range(size - len(vocab))]
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(vocab)}, unk_token=eos))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
    ])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens([eos])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos,
                                   model_max_length=2048, clean_up_tokenization_spaces=False)


def build_checkpoint(shape: str, cache_dir: Path) -> tuple[str, Path]:
    """Write ``bench/pythia-<shape>`` at ``REVISION`` as a Hub cache; returns (repo_id, snapshot dir)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    repo_id = f"bench/pythia-{shape}"
    repo_dir = cache_dir / f"models--bench--pythia-{shape}"
    stamp = {"shape": shape, "seed": SEED, **SHAPES[shape], **COMMON, "tokenizer_size": TOKENIZER_SIZE}
    commit = hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()  # 40 hex, deterministic
    snap = repo_dir / "snapshots" / commit
    marker = repo_dir / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp and (snap / "model.safetensors").is_file():
        return repo_id, snap
    shutil.rmtree(repo_dir, ignore_errors=True)
    snap.mkdir(parents=True)
    torch.manual_seed(SEED)
    config = GPTNeoXConfig(**SHAPES[shape], **COMMON)
    model = GPTNeoXForCausalLM(config).eval()
    model.save_pretrained(snap)  # safetensors
    build_tokenizer().save_pretrained(snap)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / REVISION).write_text(commit)
    marker.write_text(json.dumps(stamp))
    return repo_id, snap


def default_settings() -> dict:
    """The default ``probes`` and ``runtime`` sections (the schema's defaults)."""
    from icl_probe.config import validate_config

    return validate_config({"suites": {"none": {"source": "hub", "models": {"none": {"repo_id": "a/b"}}}}})


# ----------------------------------------------------------------------------- 2. probe pass vs bare forward
def probe_pass(lm, tok, repo_id, settings, prompts_path, out_dir):
    from icl_probe.runner import probe_checkpoint

    return probe_checkpoint(repo_id, REVISION, out_dir, settings, prompts_path, loaded=(lm, tok),
                            device="cpu", dtype="float32")


def all_batches(prompts: dict, settings: dict, pad_id: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The padded token batches of every enabled probe, exactly as the probe pass makes them."""
    from icl_probe.lens import pad_batch
    from icl_probe.prompts import sequences_of

    bs = int(settings.get("batch_size", 16))
    out = []
    for probe in settings["enabled"]:
        seqs = [s for per_seed in sequences_of(prompts, probe) for s in per_seed]
        for i in range(0, len(seqs), bs):
            ids, mask, pos, _ = pad_batch(seqs[i : i + bs], pad_id)
            out.append((probe, ids, mask, pos))
    return out


def bare_forward(lm, batches, backbone_only: bool = False) -> dict[str, float]:
    """Forward every batch (no hidden states, no attentions); seconds per probe's batches."""
    secs: dict[str, float] = {}
    run = lm.gpt_neox if backbone_only else lm
    with torch.inference_mode():
        for probe, ids, mask, pos in batches:
            t = time.perf_counter()
            run(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
            secs[probe] = secs.get(probe, 0.0) + time.perf_counter() - t
    return secs


# ----------------------------------------------------------------------------- 3. the peer (nnsight)
def peer_model(lm, tok):
    """The peer's wrapper, made once as a notebook would. nnsight instruments the modules of
    the model it wraps (per instance), so the peer gets its own copy of the weights and our
    passes keep running on an uninstrumented model."""
    from nnsight import TransformersModel

    return TransformersModel(lm, task="text-generation", tokenizer=tok)


def peer_gd_induction(model, prompts: dict, batch_size: int, limit: int | None = None) -> dict:
    """GD readout and induction surprisal with nnsight, the way its logit-lens tutorial does it.

    One ``trace`` per batch; inside it, every layer's residual output goes through the
    model's own final norm and head (only at the positions read), and only the small
    per-prompt results are saved. ``limit``: only the first prompts (warm-up).
    """
    import nnsight

    net = model.gpt_neox
    digits = prompts["gd_readout"]["digit_ids"]
    d = torch.arange(10, dtype=torch.float32)

    gd = [p for s in prompts["gd_readout"]["sets"] for p in s["prompts"]][:limit]
    y_hat = []  # per batch [L+1, B]
    with torch.inference_mode():
        for i in range(0, len(gd), batch_size):
            ids = torch.tensor([p["input_ids"] for p in gd[i : i + batch_size]])
            with model.trace(ids):
                per_layer = nnsight.save([])
                for h in [net.embed_in.output] + [layer.output for layer in net.layers]:
                    logits = model.lm_head(net.final_layer_norm(h[:, -1]))[:, digits]
                    per_layer.append(logits.softmax(-1) @ d)
            y_hat.append(torch.stack(per_layer))
    y_hat = torch.cat(y_hat, 1).double().numpy()
    y_star = np.array([p["y_star"] for p in gd], dtype=np.float64)

    m = prompts["induction"]["block_len"]
    q = torch.arange(m, 2 * m - 1)
    seqs = [x for s in prompts["induction"]["sets"] for x in s["sequences"]][:limit]
    surprisal = []  # per batch [L+1, B]
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            ids = torch.tensor(seqs[i : i + batch_size])
            target = ids[:, q + 1]
            with model.trace(ids):
                per_layer = nnsight.save([])
                for h in [net.embed_in.output] + [layer.output for layer in net.layers]:
                    logp = model.lm_head(net.final_layer_norm(h[:, q])).log_softmax(-1)
                    per_layer.append(-logp.gather(-1, target[..., None])[..., 0].mean(-1))
            surprisal.append(torch.stack(per_layer))
    surprisal = torch.cat(surprisal, 1).double().numpy()
    return {"y_hat": y_hat, "y_star": y_star, "surprisal": surprisal}


def ours_gd_induction(lm, tok, prompts, settings) -> dict:
    """Our collectors' arrays for the same quantities (seeds concatenated)."""
    from icl_probe.lens import Lens
    from icl_probe.probes.gd_readout import collect as collect_gd
    from icl_probe.probes.induction import collect as collect_induction

    lens, bs = Lens(lm), int(settings["batch_size"])
    gd = collect_gd(lens, prompts["gd_readout"], batch_size=bs, pad_id=tok.pad_token_id)
    ind = collect_induction(lens, prompts["induction"], batch_size=bs, pad_id=tok.pad_token_id)
    return {"y_hat": np.concatenate([s["y_hat"] for s in gd], 1),
            "y_star": np.concatenate([s["y_star"] for s in gd]),
            "surprisal": np.concatenate([s["surprisal"] for s in ind], 1)}


def compare_peer(ours: dict, peer: dict, prompts: dict) -> dict:
    """Max abs differences of the per-layer quantities (per seed where the spec reports per seed)."""
    sizes = [len(s["prompts"]) for s in prompts["gd_readout"]["sets"]]
    cuts = np.cumsum(sizes)[:-1]

    def gd_summary(a):
        per_seed = [np.abs(ys[None, :] - yh).mean(1) for yh, ys in
                    zip(np.split(a["y_hat"], cuts, 1), np.split(a["y_star"], cuts))]
        mean_err = np.stack(per_seed)  # [seeds, L+1]
        return mean_err, mean_err[:, 0] - mean_err[:, -1]

    me_o, er_o = gd_summary(ours)
    me_p, er_p = gd_summary(peer)
    ind_sizes = [len(s["sequences"]) for s in prompts["induction"]["sets"]]
    icuts = np.cumsum(ind_sizes)[:-1]
    e_o = np.stack([x.mean(1) for x in np.split(ours["surprisal"], icuts, 1)])
    e_p = np.stack([x.mean(1) for x in np.split(peer["surprisal"], icuts, 1)])
    diffs = {
        "y_hat": float(np.abs(ours["y_hat"] - peer["y_hat"]).max()),
        "mean_err": float(np.abs(me_o - me_p).max()),
        "error_reduction": float(np.abs(er_o - er_p).max()),
        "surprisal_per_sequence": float(np.abs(ours["surprisal"] - peer["surprisal"]).max()),
        "surprisal_per_layer": float(np.abs(e_o - e_p).max()),
    }
    diffs["ok"] = all(v <= PEER_ATOL for v in diffs.values())
    return diffs


# ----------------------------------------------------------------------------- 4. load
def load_model(repo_id, cache_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(repo_id, revision=REVISION, cache_dir=cache_dir,
                                                local_files_only=True, dtype=torch.float32)


def read_weights(snap: Path) -> int:
    """Read every safetensors byte into one reused 8 MiB buffer (the read alone, no allocation)."""
    buf = memoryview(bytearray(8 << 20))
    n = 0
    for f in sorted(snap.glob("*.safetensors")):
        with open(f, "rb", buffering=0) as fh:
            while k := fh.readinto(buf):
                n += k
    return n


FRESH_LOAD = """
import sys, time, torch, transformers
from transformers import AutoModelForCausalLM
transformers.utils.logging.disable_progress_bar()
t = time.perf_counter()
AutoModelForCausalLM.from_pretrained(sys.argv[1], revision=sys.argv[2], cache_dir=sys.argv[3],
                                     local_files_only=True, dtype=torch.float32)
print(time.perf_counter() - t)
"""


def fresh_process_load(repo_id, cache_dir) -> float:
    """``from_pretrained`` as a probe job meets it: first call in a new process (lazy imports included,
    ``import torch, transformers`` not)."""
    p = subprocess.run([sys.executable, "-c", FRESH_LOAD, repo_id, REVISION, str(cache_dir)], cwd=REPO,
                       capture_output=True, text=True, check=True)
    return float(p.stdout.strip().splitlines()[-1])


def load_and_touch(repo_id, cache_dir):
    """``from_pretrained`` then read every parameter once: safetensors are memory-mapped, so
    ``from_pretrained`` alone may return before the weight pages are read from the file."""
    model = load_model(repo_id, cache_dir)
    with torch.no_grad():
        total = sum(float(p.sum()) for p in model.parameters())
    return model, total


# ----------------------------------------------------------------------------- 5. scale
PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")


def scale_config(results_dir: str) -> dict:
    models = {f"pythia-{s}": {"repo_id": f"EleutherAI/pythia-{s}", "revisions": "all"} for s in PYTHIA_SIZES}
    return {"results_dir": results_dir,
            "suites": {"pythia": {"source": "hub", "branch_list": "recorded", "models": models}}}


def recorded_branches(repo_id: str) -> tuple[list[str], str]:
    try:
        from icl_probe.hub.selection import select_revisions
        from icl_probe.hub.suites import checkpoint_revisions, read_branch_list

        names = select_revisions(checkpoint_revisions(read_branch_list(repo_id), stage=1), "all", repo_id=repo_id)
        return names, "recorded list (icl_probe/data/branches), checkpoint names, selection 'all'"
    except Exception as e:  # noqa: BLE001 - report what blocks it, fall back to the computed schedule
        from icl_probe.hub.suites import pythia_revisions

        return pythia_revisions(), f"computed schedule (recorded list unavailable: {type(e).__name__}: {e})"


def synthetic_manifest(suite, model, repo_id, revisions) -> dict:
    """A manifest as ``icl-probe resolve`` writes it, with made-up commits and hashes (no network)."""
    from icl_probe.hub.suites import PYTHIA_TOKENS_PER_STEP, parse_revision

    entries = []
    for i, rev in enumerate(revisions):
        step = parse_revision(rev)[0]
        entries.append({"revision": rev, "step": step, "tokens": step * PYTHIA_TOKENS_PER_STEP,
                        "commit": f"{i:040x}", "files": [{"path": "model.safetensors", "size": 1,
                                                          "sha256": hashlib.sha256(f"{model}@{rev}".encode()).hexdigest()}],
                        "duplicate_of": None})
    return {"schema_version": 1, "suite": suite, "model": model, "repo_id": repo_id, "source": "hub",
            "cache_dir": None, "tokens_per_step": PYTHIA_TOKENS_PER_STEP, "revisions": entries}


def dry_run(workdir: Path, repeats: int) -> dict:
    """``snakemake -n`` for 10 models x recorded revisions: fresh (before resolve) and resolved."""
    import yaml

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cfg = scale_config("results")
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    smk = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    cmd = [smk, "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1",
           "--quiet", "rules"]
    out: dict = {"command": " ".join(shlex.quote(c) for c in cmd)}

    def once():
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        return time.perf_counter() - t, p

    res = {}
    for phase in ("fresh", "resolved"):
        if phase == "resolved":
            n_rev = 0
            for rec in cfg["suites"]["pythia"]["models"].items():
                model, m = rec
                revs, how = recorded_branches(m["repo_id"])
                n_rev += len(revs)
                path = workdir / "results" / "pythia" / model / "manifest.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(synthetic_manifest("pythia", model, m["repo_id"], revs)))
            out["revisions_total"] = n_rev
            out["branch_source"] = how
        times, last = [], None
        for _ in range(repeats):
            t, p = once()
            times.append(t)
            last = p
        jobs = _job_counts(last.stdout + last.stderr)
        res[phase] = {"seconds": times, "rc": last.returncode, "jobs": jobs,
                      "tail": (last.stdout + last.stderr)[-1500:] if last.returncode else ""}
    out.update(res)
    return out


def _job_counts(text: str) -> dict:
    counts = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z_][\w]*)\s+(\d+)\s*$", line)
        if m and m.group(1) not in ("job", "count"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def _peak_rss_run(cmd: list[str]) -> tuple[subprocess.CompletedProcess, int | None, float]:
    timer = "/usr/bin/time"
    if Path(timer).is_file():
        full = [timer, "-v", *cmd]
    else:  # fall back to getrusage of the children of a fresh interpreter
        full = [sys.executable, "-c", "import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
                "print('Maximum resident set size (kbytes):',resource.getrusage(resource.RUSAGE_CHILDREN)"
                ".ru_maxrss,file=sys.stderr);sys.exit(r.returncode)", *cmd]
    t = time.perf_counter()
    p = subprocess.run(full, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", p.stderr)
    return p, int(m.group(1)) * 1024 if m else None, wall


def peak_memory(repo_id, cache_dir: Path, prompts_path: Path, settings_all: dict, out_dir: Path) -> dict:
    """Peak RSS of one ``icl-probe probe`` job in a subprocess (``/usr/bin/time -v``).

    The settings JSON is the one the workflow's probe rule passes (``{"probes", "runtime"}``).
    If the CLI rejects it, the job is run again with the probe section and ``runtime`` merged
    at the top level (what ``probe_checkpoint`` reads), and the failure is reported.
    """
    exe = str(Path(sys.executable).parent / "icl-probe")
    base = [exe, "probe", "--model", repo_id, "--revision", REVISION, "--out", str(out_dir),
            "--prompts", str(prompts_path), "--cache-dir", str(cache_dir), "--local-files-only", "--settings"]
    workflow_json = json.dumps({"probes": settings_all["probes"], "runtime": settings_all["runtime"]}, sort_keys=True)
    p, peak, wall = _peak_rss_run(base + [workflow_json])
    out = {"rc": p.returncode, "peak_bytes": peak, "wall": wall, "settings_form": "workflow {probes, runtime}",
           "command": " ".join(shlex.quote(c) for c in base) + " '<settings JSON>'", "note": ""}
    if p.returncode:
        err = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("\t")]
        out["note"] = ("with the workflow's settings JSON the CLI failed (rc %d): %s" % (p.returncode, err[-2:] if err else "?"))
        merged = json.dumps({**settings_all["probes"], "runtime": settings_all["runtime"]}, sort_keys=True)
        p, peak, wall = _peak_rss_run(base + [merged])
        out.update(rc=p.returncode, peak_bytes=peak, wall=wall, settings_form="probes section + runtime (workaround)")
    out["tail"] = p.stderr[-2000:] if p.returncode else ""
    return out


# ----------------------------------------------------------------------------- profile
def profile_pass(lm, tok, repo_id, settings, prompts_path, out_dir, top: int = 25) -> tuple[str, tuple]:
    prof = cProfile.Profile()
    prof.enable()
    probe_pass(lm, tok, repo_id, settings, prompts_path, out_dir)
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(top)
    s.write("\n\n---- by cumulative time ----\n")
    st.sort_stats("cumulative").print_stats(top + 15)
    rows, parts = [], {}
    wanted = {"collect", "run_probe", "summarise",
              "target_logprob", "row_logits", "probe_checkpoint", "load_prompts", "write_json", "_check_prompts"}
    for (file, line, fn), (cc, nc, tt, ct, callers) in st.stats.items():
        rows.append((tt, ct, nc, f"{Path(file).name}:{line}({fn})"))
        if fn in wanted and "icl_probe" in file:
            key = f"{Path(file).stem}.{fn}" if fn == "collect" else fn  # one collect per probe module
            parts[key] = parts.get(key, 0.0) + ct
        if fn == "forward" and file.endswith("modeling_gpt_neox.py") and ct > parts.get("model forward (GPTNeoXModel)", 0):
            parts["model forward (GPTNeoXModel)"] = ct  # the outermost forward has the largest cumulative time
    rows.sort(reverse=True)
    return s.getvalue(), (rows[:top], parts)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="160m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["overhead", "peer", "backbone", "check", "load", "dryrun", "memory", "profile"],
                    help="parts to leave out; 'backbone' = the one-off backbone-only forward, 'check' = the "
                         "peer check run (our collectors alone)")
    ap.add_argument("--tag", default="", help="suffix of benchmarks/_work/results-<shape>[-tag].json")
    ap.add_argument("--merge", help="results-<shape>.json of an earlier run: parts skipped now are taken from it "
                                    "(and marked as such in the report)")
    ap.add_argument("--render", help="only re-render a results JSON written by this script into --out")
    args = ap.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        info = saved.pop("machine")
        Path(args.out).write_text(render(info, saved, saved.get("argv") or []))
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    work = Path(args.work)
    cache = work / "hub"
    settings_all = default_settings()
    settings = settings_all["probes"]
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    info = machine()
    log("machine:", info)

    from icl_probe.runner import load_checkpoint, load_prompt_files, make_prompts

    t_build, (repo_id, snap) = timed(lambda: build_checkpoint(args.shape, cache))
    weight_bytes = sum(f.stat().st_size for f in snap.glob("*.safetensors"))
    log(f"checkpoint {repo_id}@{REVISION}: {weight_bytes / 2**20:.0f} MiB ({t_build:.1f} s)")
    prompts_path = work / f"prompts-{args.shape}"
    make_prompts(repo_id, REVISION, prompts_path, settings, cache_dir=str(cache), local_files_only=True)
    prompts = load_prompt_files(prompts_path)
    lm, tok = load_checkpoint(repo_id, REVISION, cache_dir=str(cache), local_files_only=True)
    n_params = sum(p.numel() for p in lm.parameters())
    batches = all_batches(prompts, settings, tok.pad_token_id)
    n_tokens = {p: sum(int(m.sum()) for q, _, m, _ in batches if q == p) for p in settings["enabled"]}
    log(f"{n_params / 1e6:.1f}M params; batches: {len(batches)}; tokens per probe: {n_tokens}")
    R = args.repeats
    res: dict = {"shape": args.shape, "repeats": R, "params": n_params, "weight_bytes": weight_bytes,
                 "tokens": n_tokens, "n_batches": len(batches), "t_probe": [], "t_bare": [], "per_probe_json": [],
                 "t_peer": [], "t_ours2": [], "icl_probe_commit": _git_head()}
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=work))

    def finish(final: bool) -> str:
        """Write the results JSON and the report (after every stage, so a cut-short run leaves its numbers)."""
        out = dict(res)
        info["load_at_end"] = os.getloadavg()
        if args.merge:
            earlier = json.loads(Path(args.merge).read_text())
            if earlier.get("shape") != args.shape:
                raise SystemExit(f"--merge {args.merge}: shape {earlier.get('shape')!r}, not {args.shape!r}")
            taken = []
            for key in MERGEABLE:
                if not out.get(key) and earlier.get(key):
                    out[key] = earlier[key]
                    taken.append(key)
            m = earlier["machine"]
            out["merged"] = {"file": str(args.merge), "keys": taken, "written": earlier.get("written"),
                             "load": [m.get("load_at_start"), m.get("load_at_end")]}
        out["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        out["complete"] = final
        out["argv"] = list(argv if argv is not None else sys.argv[1:])
        (work / f"results-{args.shape}{'-' + args.tag if args.tag else ''}.json").write_text(json.dumps({"machine": info, **out}, indent=1, default=str))
        report = render(info, out, argv if argv is not None else sys.argv[1:])
        Path(args.out).write_text(report)
        return report

    if "dryrun" not in args.skip:
        res["dryrun"] = dry_run(work / "scale", max(1, min(R, 3)))
        finish(final=False)
        log("dry run", {k: v for k, v in res["dryrun"].items() if k != "tail"})

    if "load" not in args.skip:
        read_weights(snap)  # warm the page cache
        load_model(repo_id, str(cache))
        t_load, t_read, t_loadtok, t_touch = [], [], [], []
        for _ in range(max(R, 5)):
            t, m = timed(lambda: load_and_touch(repo_id, str(cache)))
            del m
            t_touch.append(t)
            t_read.append(timed(lambda: read_weights(snap))[0])
            t, m = timed(lambda: load_model(repo_id, str(cache)))
            del m
            t_load.append(t)
            t, m = timed(lambda: load_checkpoint(repo_id, REVISION, cache_dir=str(cache), local_files_only=True))
            del m
            t_loadtok.append(t)
        t_fresh = [fresh_process_load(repo_id, cache) for _ in range(min(R, 3))]
        res.update(t_load=t_load, t_read=t_read, t_load_with_tokenizer=t_loadtok, t_load_touch=t_touch,
                   t_load_fresh=t_fresh)
        log(f"load {fmt_s(t_load)}, read {fmt_s(t_read)}, load+tokenizer {fmt_s(t_loadtok)}")
        finish(final=False)

    # warm-up: one batch of each probe through the bare model and the eager path
    bare_forward(lm, batches[:1])
    from icl_probe.lens import Lens

    for _ in Lens(lm).run(prompts["induction"]["sets"][0]["sequences"][:2], None, attentions=True):
        pass
    if "peer" not in args.skip:
        lm_peer, _ = load_checkpoint(repo_id, REVISION, cache_dir=str(cache), local_files_only=True)
        peer_lm = peer_model(lm_peer, tok)
        peer_gd_induction(peer_lm, prompts, int(settings["batch_size"]), limit=2)  # warm-up

    # interleaved repeats, so load drift on the shared machine hits every method alike
    t_probe, t_bare, per_probe_json, t_peer, t_ours2, peer = [], [], [], [], [], None
    for r in range(R):
        if "overhead" not in args.skip:
            t, paths = timed(lambda: probe_pass(lm, tok, repo_id, settings, prompts_path, tmp / f"probe{r}"))
            t_probe.append(t)
            per_probe_json.append({p: json.loads(Path(f).read_text())["timing"]["seconds"] for p, f in paths.items()})
            # ours for the peer's two probes: their share of this same pass (passes, metrics, bootstrap)
            t_ours2.append(per_probe_json[-1]["gd_readout"] + per_probe_json[-1]["induction"])
            log(f"[{r}] probe pass {t:.2f} s {per_probe_json[-1]}")
            secs = bare_forward(lm, batches)
            t_bare.append(sum(secs.values()))
            res.setdefault("bare_per_probe", []).append(secs)
            log(f"[{r}] bare forward {t_bare[-1]:.2f} s {secs}")
        if "peer" not in args.skip:
            t, peer = timed(lambda: peer_gd_induction(peer_lm, prompts, int(settings["batch_size"])))
            t_peer.append(t)
            log(f"[{r}] peer {t:.2f} s")
        res.update(t_probe=t_probe, t_bare=t_bare, per_probe_json=per_probe_json, t_peer=t_peer, t_ours2=t_ours2,
                   repeats_done=r + 1)
        finish(final=False)
    res.update(t_probe=t_probe, t_bare=t_bare, per_probe_json=per_probe_json, t_peer=t_peer, t_ours2=t_ours2)
    # once: the backbone-only forward (info), our collectors alone and the peer check
    if "overhead" not in args.skip and "backbone" not in args.skip:
        secs = bare_forward(lm, batches, backbone_only=True)
        res.update(t_backbone=[sum(secs.values())], backbone_per_probe=[secs])
        log(f"backbone only {sum(secs.values()):.2f} s {secs}")
    if peer is not None and "check" not in args.skip:
        t, ours = timed(lambda: ours_gd_induction(lm, tok, prompts, settings))
        res.update(t_ours2_collect=[t], peer_check=compare_peer(ours, peer, prompts))
        log(f"ours (collect only) {t:.2f} s, check {res['peer_check']}")

    if "profile" not in args.skip:
        text, rows = profile_pass(lm, tok, repo_id, settings, prompts_path, tmp / "profile")
        (work / f"profile-{args.shape}.txt").write_text(text)
        res["profile_top"] = rows[0]
        res["profile_parts"] = rows[1]
        log(text[:4000])

    del lm
    peer_lm = lm_peer = None
    gc.collect()
    if "memory" not in args.skip:
        res["memory"] = peak_memory(repo_id, cache, prompts_path, settings_all, tmp / "memory")
        log("memory", res["memory"])
    shutil.rmtree(tmp, ignore_errors=True)
    print(finish(final=True))
    return 0


# ----------------------------------------------------------------------------- report
MERGEABLE = ("memory", "profile_top", "profile_parts", "peer_check", "t_backbone", "backbone_per_probe",
             "t_ours2_collect", "dryrun", "t_load", "t_read", "t_load_with_tokenizer", "t_load_touch", "t_load_fresh")


def render(info: dict, res: dict, argv) -> str:
    R = res.get("repeats_done", res["repeats"])
    rows = []  # (measure, value, target, holds)

    def ratio_row(name, num, den, target, op, note=""):
        if not num or not den:
            rows.append((name, "not measured", target, "-", note))
            return
        v = median(num) / median(den)
        ok = v <= op[1] if op[0] == "<=" else v >= op[1]
        holds = "-" if target == "(info)" else ("yes" if ok else "NO")
        rows.append((name, f"{v:.2f} ({fmt_s(num)} / {fmt_s(den)})", target, holds, note))

    ratio_row("probe overhead = probe pass / bare forward (full model, logits)", res["t_probe"], res["t_bare"],
              "<= 1.5", ("<=", 1.5))
    ratio_row("probe pass / backbone-only forward (no LM head; 1 run)", res["t_probe"], res.get("t_backbone"),
              "(info)", ("<=", float("inf")))
    ratio_row("peer ratio = nnsight / our gd_readout + induction probes (their share of the probe pass)", res["t_peer"], res["t_ours2"],
              ">= 3", (">=", 3.0))
    ratio_row("nnsight / our collectors for the same two probes (passes + lens, no metrics/bootstrap; 1 run)", res["t_peer"],
              res.get("t_ours2_collect"), "(info)", (">=", 0))
    ratio_row("load ratio = from_pretrained / read safetensors bytes (warm)", res.get("t_load"),
              res.get("t_read"), "<= 1.5", ("<=", 1.5))
    ratio_row("from_pretrained + one read of every parameter / read safetensors bytes (warm)", res.get("t_load_touch"),
              res.get("t_read"), "<= 1.5", ("<=", 1.5))
    ratio_row("from_pretrained as the first call in a fresh process (lazy imports) / read bytes (warm)",
              res.get("t_load_fresh"), res.get("t_read"), "(info)", ("<=", float("inf")))
    ratio_row("load_checkpoint (model + tokenizer) / read bytes (warm)", res.get("t_load_with_tokenizer"),
              res.get("t_read"), "(info)", ("<=", float("inf")))
    dr = res.get("dryrun")
    if dr:
        for phase in ("fresh", "resolved"):
            d = dr[phase]
            n = d["jobs"].get("total", "?")
            if d["rc"] == 0:
                ok = "yes" if median(d["seconds"]) < 30 else "NO"
                rows.append((f"snakemake -n, {phase} ({n} jobs)", fmt_s(d["seconds"]),
                             "< 30 s" if phase == "resolved" else "(info)",
                             ok if phase == "resolved" else "-", ""))
            else:
                rows.append((f"snakemake -n, {phase}", f"failed (rc {d['rc']})", "< 30 s", "NO", ""))
    mem = res.get("memory")
    if mem:
        w = res["weight_bytes"]
        if mem["peak_bytes"]:
            limit = 1.5 * w + 2**30
            rows.append(("peak RSS of one `icl-probe probe` job / weight size",
                         f"{mem['peak_bytes'] / w:.2f} ({mem['peak_bytes'] / 2**30:.2f} GiB / {w / 2**30:.2f} GiB)",
                         f"< 1.5 x weights + 1 GiB = {limit / 2**30:.2f} GiB", "yes" if mem["peak_bytes"] < limit else "NO",
                         ""))
        else:
            rows.append(("peak RSS of one probe job", f"failed (rc {mem['rc']})", "< 1.5 x weights + 1 GiB", "NO", ""))

    cmd = "python benchmarks/run.py" + ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))
    L = []
    L.append("# Benchmark results: probe cost vs a bare forward pass and a peer library\n")
    L.append(f"Command (from the repository root): `{cmd}`  ")
    L.append(f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/run.py`; "
             f"medians of {R} repeats (min-max in brackets), interleaved"
             + ("" if res.get("complete") else " (**run not finished: partial results**)") + ".\n")
    L.append("How each number is measured, and what it leaves out: `benchmarks/README.md`.\n")
    L.append("## Machine\n")
    L.append(f"- CPU: {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}), RAM {info['ram']}")
    L.append(f"- icl-probe at commit {res.get('icl_probe_commit', '?')}")
    L.append(f"- Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}, "
             f"nnsight {info['nnsight']} (pinned `{PEER_PIN}`), snakemake {info['snakemake']}")
    la, lb = info["load_at_start"], info.get("load_at_end", ("?",) * 3)
    L.append(f"- load average at start {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}, at end "
             + (f"{lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}" if isinstance(lb[0], float) else "?")
             + " (a shared machine: timings carry that noise)\n")
    L.append("## Model and prompts\n")
    L.append(f"- GPT-NeoX, Pythia-{res['shape']} shape ({', '.join(f'{k}={v}' for k, v in SHAPES[res['shape']].items())}, "
             f"vocab_size 50304, rotary_pct 0.25, parallel residual), random weights (seed {SEED}), "
             f"{res['params'] / 1e6:.1f}M parameters, fp32, {res['weight_bytes'] / 2**20:.0f} MiB of safetensors, "
             "loaded from a local Hub cache under `benchmarks/_work/hub`")
    L.append(f"- word-level tokenizer with {TOKENIZER_SIZE} entries (digits 0-9 single tokens); default probe "
             f"settings; {res['n_batches']} batches; real tokens per probe: {res['tokens']}\n")
    if res.get("merged") and res["merged"]["keys"]:
        mg = res["merged"]
        la0, la1 = mg["load"]
        L.append(f"Taken from an earlier run of the same script (`{mg['file']}`, written {mg['written']}, load average "
                 f"{la0[0]:.1f} at its start, {la1[0]:.1f} at its end), because this run skipped them: "
                 + ", ".join(f"`{k}`" for k in mg["keys"]) + ".\n")
    L.append("## Results\n")
    L.append("| measure | median ratio (numerator / denominator) | target | holds |")
    L.append("|---|---|---|---|")
    for name, v, tgt, ok, _ in rows:
        L.append(f"| {name} | {v} | {tgt} | {ok} |")
    L.append("")
    if res["per_probe_json"]:
        L.append("### Where the time goes, per probe (medians, seconds)\n")
        L.append("| probe | probe pass (its `timing.seconds`) | bare forward, same batches | backbone-only forward (1 run) |")
        L.append("|---|---|---|---|")
        for p in res["per_probe_json"][0]:
            bb = res.get("backbone_per_probe")
            L.append(f"| {p} | {median([d[p] for d in res['per_probe_json']]):.2f} "
                     f"| {median([d[p] for d in res['bare_per_probe']]):.2f} "
                     + (f"| {bb[0][p]:.2f} |" if bb else "| - |"))
        L.append("")
    if res.get("profile_parts"):
        L.append("Inside one (profiled) probe pass, cumulative seconds: "
                 + ", ".join(f"`{k}` {v:.1f}" for k, v in sorted(res["profile_parts"].items(), key=lambda kv: -kv[1]))
                 + " (`summarise` = metrics + bootstrap, all four probes; `model forward` = every backbone call).\n")
    if res.get("peer_check"):
        pc = res["peer_check"]
        L.append("### Peer check (nnsight vs ours, max abs difference, fp32)\n")
        L.append(f"Tolerance atol {PEER_ATOL:g}; agree: **{'yes' if pc['ok'] else 'NO'}**. "
                 + ", ".join(f"{k} {v:.2e}" for k, v in pc.items() if k != "ok") + "\n")
    if res.get("memory"):
        m = res["memory"]
        L.append(f"Peak memory job (wall {m['wall']:.1f} s, load included; settings JSON form: {m['settings_form']}): "
                 f"`{m['command']}`\n")
        if m["note"]:
            L.append(f"Note: {m['note']}\n")
        if m["tail"]:
            L.append("```\n" + m["tail"] + "\n```\n")
    if dr:
        L.append(f"Dry run: `{dr['command']}` in a scratch folder whose `config.yaml` names 10 Pythia models "
                 "(`source: hub`, `branch_list: recorded`, `revisions: all`). 'fresh': before any manifest exists "
                 "(a sweep's first dry run; the DAG comes from the static revision plan, `icl_probe.plan`); "
                 f"'resolved': with a manifest per model ({dr.get('revisions_total', '?')} revisions in all, branches "
                 f"from the {dr.get('branch_source', '?')}; made-up commits and hashes), as after the resolve jobs. "
                 f"Jobs: fresh {dr['fresh']['jobs']}, resolved {dr['resolved']['jobs']}.\n")
        for phase in ("fresh", "resolved"):
            if dr[phase]["tail"]:
                L.append(f"{phase} dry run failed:\n```\n{dr[phase]['tail']}\n```\n")
    if res.get("profile_top"):
        L.append("### Profile of one probe pass (cProfile, top by own time)\n")
        if res.get("profile_note"):
            L.append(res["profile_note"] + "\n")
        L.append("| own s | cumulative s | calls | function |")
        L.append("|---|---|---|---|")
        for tt, ct, nc, fn in res["profile_top"][:15]:
            L.append(f"| {tt:.2f} | {ct:.2f} | {nc} | `{fn}` |")
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
