"""Fixed cost of one probe job: where the seconds of `icl-probe probe` on a mini-suite checkpoint go.

Usage (from the repository root, after a default run has finished in WORKDIR):

    python benchmarks/fixed_cost.py --workdir WORKDIR [--model pythia-m --revision step5000] [--repeats 5]

Each repeat starts a fresh Python process that runs the job's own entry point
(``icl_probe.cli.main``, the same arguments the workflow's probe rule passes) with timers
wrapped around its parts: interpreter start, imports (icl-probe, torch, transformers and the
model's modeling module), load (tokenizer and weights), passes (the model forward passes and
lens readouts), metrics + bootstrap (``summarise``), writes (the atomic JSON writes) and the
rest. It also times the plain command end to end, alone (``ICL_PROBE_WARM=0``) and through a warm
worker (:mod:`icl_probe.warm`), and checks that both give the same results. Prints one JSON object (medians over the
repeats, each phase's min-max) and, with ``--markdown``, the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBES = ("gd_readout", "induction", "attention_sinks", "associative_recall")

CHILD = r"""
import json, sys, time
t_first = time.time()
marks = {}
t = time.perf_counter()
import icl_probe.cli as cli
import icl_probe.runner as runner
import icl_probe.io as io
import transformers.models.{module}.modeling_{module}  # what from_pretrained imports lazily
marks["imports"] = time.perf_counter() - t
acc = {"load": 0.0, "metrics + bootstrap": 0.0, "writes": 0.0}

def timed(key, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[key] += time.perf_counter() - t0
    return wrapper

runner.load_checkpoint = timed("load", runner.load_checkpoint)
runner.summarise = timed("metrics + bootstrap", runner.summarise)
runner.write_json = timed("writes", runner.write_json)
t = time.perf_counter()
rc = cli.main(sys.argv[1:])
job = time.perf_counter() - t
probes = sum(json.load(open(f"{out}/{p}.json"))["timing"]["seconds"] for p in {probes})
marks["load"] = acc["load"]
marks["metrics + bootstrap"] = acc["metrics + bootstrap"]
marks["passes"] = probes - acc["metrics + bootstrap"]
marks["writes"] = acc["writes"]
marks["rest (settings, prompts, checks, hashes)"] = job - acc["load"] - probes - acc["writes"]
print(json.dumps({"rc": rc, "t_first": t_first, "marks": marks}), flush=True)
import atexit, os
atexit._run_exitfuncs()
os._exit(rc)  # as the icl-probe command ends (icl_probe.cli.entry)
"""


def job_args(workdir: Path, model: str, revision: str, out: Path) -> list[str]:
    res = workdir / "results"
    return ["probe", "--manifest", str(res / "mini" / model / "manifest.json"), "--revision", revision,
            "--prompts", *[str(res / "mini" / model / "prompts" / f"{p}.json") for p in PROBES],
            "--cache-dir", str(workdir / "resources" / "minisuite" / "hub"),
            "--settings-file", *[str(res / "settings" / "probes" / f"{p}.json") for p in PROBES],
            "--threads", "1", "--out", str(out)]


def one_repeat(workdir: Path, model: str, revision: str, out: Path, module: str) -> dict:
    args = job_args(workdir, model, revision, out)
    code = CHILD.replace("{module}", module).replace("{out}", str(out)).replace("{probes}", repr(PROBES))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=workdir)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the instrumented job failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    phases = {"interpreter start": rec["t_first"] - t0, **rec["marks"]}
    phases["process exit"] = wall - sum(phases.values())
    cold = {**os.environ, "ICL_PROBE_WARM": "0"}
    return {"phases": phases, "instrumented_wall": wall, "command_wall": plain(args, workdir, cold)}


def plain(args: list[str], workdir: Path, environ: dict) -> float:
    """Wall seconds of the plain ``icl-probe probe`` command."""
    t0 = time.perf_counter()
    proc = subprocess.run(["icl-probe", *args], capture_output=True, text=True, cwd=workdir, env=environ)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"icl-probe probe failed:\n{proc.stderr[-3000:]}")
    return wall


def results(out: Path) -> dict:
    """The result files but for their timings."""
    return {p: {k: v for k, v in json.loads((out / f"{p}.json").read_text()).items() if k != "timing"}
            for p in PROBES}


def warm_walls(workdir: Path, model: str, revision: str, out: Path, repeats: int) -> list[float]:
    """The plain command through a warm worker (icl_probe.warm) of its own: the first two commands
    run alone (the second starts the worker), then ``repeats`` timed ones. Their results must equal
    a cold run's."""
    import tempfile

    args = job_args(workdir, model, revision, out)
    expected = results(out)
    with tempfile.TemporaryDirectory() as d:
        environ = {**os.environ, "ICL_PROBE_WARM_DIR": d}
        environ.pop("ICL_PROBE_WARM", None)
        plain(args, workdir, environ)
        plain(args, workdir, environ)
        deadline = time.time() + 120
        while not list(Path(d).glob("*/*.sock")) and time.time() < deadline:
            time.sleep(0.2)
        if not list(Path(d).glob("*/*.sock")):
            raise SystemExit("no warm worker came up")
        walls = [plain(args, workdir, environ) for _ in range(repeats)]
        log = next(Path(d).glob("*/*.log")).read_text()
        if log.count(" job ") < repeats:
            raise SystemExit(f"the worker ran {log.count(' job ')} of {repeats} commands:\n{log}")
        if results(out) != expected:
            raise SystemExit("warm and cold results differ")
        for line in log.splitlines():
            if "ready: pid" in line:
                os.kill(int(line.split("ready: pid")[1].split()[0]), 15)
    return walls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="a folder holding a finished default run")
    ap.add_argument("--model", default="pythia-m")
    ap.add_argument("--revision", default="step5000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    workdir = args.workdir.resolve()
    module = "olmo2" if args.model.startswith("olmo2") else "gpt_neox"
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "icl-probe-fixed-cost"
    load_start = os.getloadavg()
    runs = [one_repeat(workdir, args.model, args.revision, out, module) for _ in range(args.repeats)]
    warm = warm_walls(workdir, args.model, args.revision, out, args.repeats)
    load_end = os.getloadavg()
    names = list(runs[0]["phases"])
    med = {n: statistics.median(r["phases"][n] for r in runs) for n in names}
    span = {n: (min(r["phases"][n] for r in runs), max(r["phases"][n] for r in runs)) for n in names}
    summary = {
        "model": args.model, "revision": args.revision, "repeats": args.repeats,
        "load_average_start": load_start, "load_average_end": load_end,
        "command_wall_s": statistics.median(r["command_wall"] for r in runs),
        "command_wall_range_s": [min(r["command_wall"] for r in runs), max(r["command_wall"] for r in runs)],
        "command_wall_warm_s": statistics.median(warm), "command_wall_warm_range_s": [min(warm), max(warm)],
        "phases_median_s": med, "phases_range_s": span,
        "fixed_cost_s": sum(v for n, v in med.items() if n != "passes"),
    }
    summary["fixed_cost_warm_s"] = summary["command_wall_warm_s"] - med["passes"]
    print(json.dumps(summary, indent=1))
    if args.markdown:
        print("\n| phase | median s | min-max s |\n|---|---|---|")
        for n in names:
            print(f"| {n} | {med[n]:.2f} | {span[n][0]:.2f}-{span[n][1]:.2f} |")
        print(f"| **everything but the passes** | **{summary['fixed_cost_s']:.2f}** | |")
        lo, hi = summary["command_wall_range_s"]
        print(f"| `icl-probe probe` end to end (uninstrumented, `ICL_PROBE_WARM=0`) | {summary['command_wall_s']:.2f} | {lo:.2f}-{hi:.2f} |")
        lo, hi = summary["command_wall_warm_range_s"]
        print(f"| `icl-probe probe` end to end, warm worker | {summary['command_wall_warm_s']:.2f} | {lo:.2f}-{hi:.2f} |")
        print(f"| **warm: everything but the passes** (end to end minus the passes' median) | "
              f"**{summary['fixed_cost_warm_s']:.2f}** | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
