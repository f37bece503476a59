"""Sweep overlap: does the download of checkpoint k+1 hide behind the probing of checkpoint k?

Usage (repository root, project venv active):

    python benchmarks/sweep_overlap.py [--revisions 12] [--bandwidth-mb 40] [--cores 2] [--markdown]

A suite of one Pythia-70M-shape model (random weights, a fresh seed per revision, so no revision
serves another's files) is written once as a Hub cache under ``benchmarks/_work/sweep-hub``
and served over HTTP by the local Hub stand-in (``icl_probe.hub.testing.serve_hub``), its file
bodies throttled to one shared link of ``--bandwidth-mb`` MB/s. The real workflow then runs on
it (``snakemake --cores N`` in a fresh working folder: resolve, fetch, prompts, probe,
aggregate, figures), by default with small prompt sets (``.test/config_hub``'s, ``--prompts
small``) so that one probe job and one download take about as long, which is where overlap
matters most; ``--prompts default`` takes ``config.yaml``'s.

Reported: the wall time of the run; the sum of the fetch jobs' and of the probe jobs' seconds
(their Snakemake benchmark files); the ratio wall / max(sum fetch, sum probe) (target <= 1.15);
the same against the link's own floor (all bytes / bandwidth); and the peak bytes of fetched
checkpoints on disk (sampled every 0.1 s under ``resources/fetch`` and the working folder's
HF_HOME), in checkpoints (target: never above two).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
sys.path.insert(0, str(HERE))

SHAPE = dict(num_hidden_layers=6, hidden_size=512, num_attention_heads=8, intermediate_size=2048)  # pythia-70m
REPO_ID = "bench/pythia-70m-sweep"


def build_suite(root: Path, n: int) -> tuple[list[str], int]:
    """``n`` branches step0, step1000, ... of REPO_ID under ``root`` (kept between runs); bytes per checkpoint."""
    import hashlib

    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    import run as bench

    repo = root / f"models--{REPO_ID.replace('/', '--')}"
    branches = [f"step{1000 * i}" for i in range(n)]
    tok_dir = root / "_tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        bench.build_tokenizer().save_pretrained(tok_dir)
    for i, branch in enumerate(branches):
        commit = hashlib.sha1(f"{REPO_ID}@{branch}@{SHAPE}".encode()).hexdigest()
        snap = repo / "snapshots" / commit
        if not (snap / "model.safetensors").is_file():
            tmp = snap.with_name(commit + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            torch.manual_seed(i)
            GPTNeoXForCausalLM(GPTNeoXConfig(**SHAPE, **bench.COMMON)).save_pretrained(tmp)
            for f in tok_dir.iterdir():
                shutil.copyfile(f, tmp / f.name)
            shutil.rmtree(snap, ignore_errors=True)
            tmp.rename(snap)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    snap = repo / "snapshots" / (repo / "refs" / branches[0]).read_text()
    return branches, sum(f.stat().st_size for f in snap.iterdir())  # weights, config and tokenizer


def tree_bytes(*roots: Path) -> int:
    total = 0
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except FileNotFoundError:
                    continue
                total += st.st_blocks * 512
    return total


def job_seconds(workdir: Path, rule: str) -> list[float]:
    out = []
    for p in sorted((workdir / "logs" / "benchmarks").glob(f"**/{rule}.tsv")):
        with open(p) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        out += [float(r["s"]) for r in rows]
    return out


LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] (\w+) (\S+) (started|done)")


def job_spans(log: str) -> dict[str, list[tuple[float, float]]]:
    """(start, end) seconds of day of every job per rule, from the workflow's console lines
    ``[HH:MM:SS] rule what started|done`` (one-second resolution; a run past midnight is not
    understood)."""
    started, spans = {}, {}
    for line in log.splitlines():
        if m := LINE.match(line):
            h, mi, se = map(int, m.group(1).split(":"))
            t, key = 3600 * h + 60 * mi + se, (m.group(2), m.group(3))
            if m.group(4) == "started":
                started[key] = t
            elif key in started:
                spans.setdefault(m.group(2), []).append((started.pop(key), t))
    return spans


def main(argv=None) -> int:
    import yaml

    from icl_probe.hub.testing import serve_hub

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revisions", type=int, default=12)
    ap.add_argument("--bandwidth-mb", type=float, default=40.0, help="MB/s (1e6 bytes) of the served link")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--prompts", choices=["small", "default"], default="small",
                    help="small: .test/config_hub's prompt sets (a probe job about as long as a download); "
                         "default: config.yaml's")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (printed)")
    args = ap.parse_args(argv)

    root = WORK / "sweep-hub"
    branches, ckpt_bytes = build_suite(root, args.revisions)
    src = REPO / ".test" / "config_hub" / "config.yaml" if args.prompts == "small" else REPO / "config.yaml"
    cfg = yaml.safe_load(src.read_text())
    cfg.pop("minisuite", None)
    cfg["suites"] = {"bench": {"source": "hub", "branch_list": "live", "models": {
        "pythia-70m": {"repo_id": REPO_ID, "revisions": branches}}}}
    workdir = Path(tempfile.mkdtemp(prefix="sweep-", dir=WORK))
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    hf_home = workdir / "hf-home"
    fetched = workdir / "resources" / "fetch"
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_bytes(fetched, hf_home))
            time.sleep(0.1)

    bps = args.bandwidth_mb * 1e6
    bindir = str(Path(sys.executable).parent)
    with serve_hub(root, bandwidth_bps=bps, max_requests=100_000, lifetime_s=7200) as hub:
        env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "HF_ENDPOINT": hub.endpoint,
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(hf_home)}
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", str(args.cores)]
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        load0 = os.getloadavg()
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        stop.set()
        watcher.join()
        downloads = sum(1 for m, p, s in hub.requests if m == "GET" and p.endswith("/model.safetensors"))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"the workflow failed (working folder kept: {workdir})")
    fetch_s, probe_s = job_seconds(workdir, "fetch"), job_seconds(workdir, "probe")
    link_s = args.revisions * ckpt_bytes / bps
    spans = job_spans(proc.stderr)
    sweep = [t for r in ("fetch", "probe") for span in spans.get(r, []) for t in span]
    complete = all(len(spans.get(r, [])) == args.revisions for r in ("fetch", "probe"))
    sweep_s = max(sweep) - min(sweep) if complete else float("nan")  # nan: the log was not understood
    (WORK / "sweep-overlap.log").write_text(proc.stderr)
    res = {
        "revisions": args.revisions, "cores": args.cores, "prompts": args.prompts, "bandwidth_MBps": args.bandwidth_mb,
        "checkpoint_MB": ckpt_bytes / 1e6, "weight_downloads": downloads, "wall_s": wall,
        "sum_fetch_s": sum(fetch_s), "sum_probe_s": sum(probe_s), "link_floor_s": link_s,
        "fetch_s": fetch_s, "probe_s": probe_s,
        "ratio": wall / max(sum(fetch_s), sum(probe_s)),
        "sweep_phase_s": sweep_s,  # first fetch start to last probe end (Snakemake's log)
        "ratio_sweep_phase": sweep_s / max(sum(fetch_s), sum(probe_s)),
        "jobs_seen_in_log": {r: len(v) for r, v in spans.items()},
        "ratio_vs_link_or_probe_floor": wall / max(link_s, sum(probe_s) / args.cores),
        "peak_fetched_bytes": peak[0], "peak_checkpoints_on_disk": peak[0] / ckpt_bytes,
        "load_start": load0, "load_end": os.getloadavg(),
    }
    (WORK / "sweep-overlap.json").write_text(json.dumps(res, indent=1))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"working folder: {workdir}", file=sys.stderr)
    if args.markdown:
        print("| measure | value |\n|---|---|")
        print(f"| revisions x checkpoint | {args.revisions} x {ckpt_bytes / 1e6:.0f} MB, link {args.bandwidth_mb:g} MB/s, "
              f"--cores {args.cores}, {args.prompts} prompt sets |")
        print(f"| wall time of the run | {wall:.1f} s |")
        print(f"| sum of fetch jobs / of probe jobs | {sum(fetch_s):.1f} s / {sum(probe_s):.1f} s |")
        print(f"| wall / max(sum fetch, sum probe) | {res['ratio']:.2f} (target <= 1.15) |")
        print(f"| fetch + probe phase (first fetch start to last probe end) | {sweep_s:.0f} s |")
        print(f"| **phase / max(sum fetch, sum probe)** | **{res['ratio_sweep_phase']:.2f}** (target <= 1.15) |")
        print(f"| wall / max(bytes / link, sum probe / cores) | {res['ratio_vs_link_or_probe_floor']:.2f} |")
        print(f"| peak fetched bytes on disk | {peak[0] / 1e6:.0f} MB = {res['peak_checkpoints_on_disk']:.2f} "
              f"checkpoints (target <= 2) |")
        print(f"| load average start / end | {' / '.join(f'{x:.2f}' for x in load0)} ; "
              f"{' / '.join(f'{x:.2f}' for x in res['load_end'])} |")
    else:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
