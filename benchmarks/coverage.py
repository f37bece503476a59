"""Coverage study: do the "95 %" intervals of the per-model statistics cover the truth?

Simulates reruns of the probes on a model with known true curves (the noise has
the probes' own structure: three prompt seeds, a persistent per-prompt
deviation read at every checkpoint; ``icl_probe.stats.synthetic.simulate_model``),
computes the statistics and their intervals exactly as the workflow does
(``icl_probe.stats.model.model_statistics``) and counts how often each interval
covers the value the statistic has on the true curves. Two paths:

- ``workflow``: the per-prompt values the probes keep (prompt bootstrap);
- ``table``: only the per-checkpoint mean, std and 95 % interval columns, as a
  table made elsewhere gives ``icl-probe aggregate --table``.

It also counts label decisions on trajectories where the answer is known: a
flat sign agreement (true sa_decay = 0) called "direction decays", and pure
noise (true ER = 0 everywhere) called emerging.

    python benchmarks/coverage.py --sims 400            # the table in docs/metrics.md ("Coverage")
    python benchmarks/coverage.py --sims 60 --boot 300  # a quick look

Prints a Markdown table; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from icl_probe.stats.model import bootstrapped, model_statistics
from icl_probe.stats.synthetic import PYTHIA_STEPS, default_curves, simulate_model

STATS = ("error_reduction (each checkpoint)", "peak_er", "half_max_step_interp", "zero_crossing_interp",
         "er_decay", "sa_decay", "sink_half_rise_step", "co_emergence_lag")


def truth_curves(steps) -> dict:
    c = default_curves(steps)
    return {k: c[k] for k in ("error_reduction", "sign_agreement", "late_early_ratio")}


PATHS = ("workflow", "table", "table-std")


def _as_path(table, path: str):
    """The columns each path sees: the workflow has per-prompt values (spread columns
    dropped, to show they are not used), "table" the mean, std and interval columns,
    "table-std" the mean and std only."""
    if path == "workflow":
        return table.drop(columns=[c for c in table.columns if c.endswith(("_ci_lo", "_ci_hi"))])
    if path == "table-std":
        return table.drop(columns=[c for c in table.columns if c.endswith(("_ci_lo", "_ci_hi"))])
    return table


def covered(ci, value) -> float:
    if ci is None or value is None:
        return np.nan
    return float(ci[0] <= value <= ci[1])


def one_run(steps, truth, rng, path: str, n_boot: int) -> dict:
    table, samples = simulate_model(steps, truth, rng)
    table = _as_path(table, path)
    if path != "workflow":
        samples = None
    res = model_statistics(table, {"bootstrap": n_boot, "seed": int(rng.integers(1 << 31))}, samples)
    true = bootstrapped(np.asarray(steps, dtype=float), truth)
    out = {}
    erci = res["statistics"].get("error_reduction_ci")
    if erci:
        lo, hi = np.array(erci["lo"], dtype=float), np.array(erci["hi"], dtype=float)
        mu = np.asarray(truth["error_reduction"])
        out["error_reduction (each checkpoint)"] = float(np.mean((lo <= mu) & (mu <= hi)))
    for k in STATS[1:]:
        out[k] = covered((res["intervals"].get(k) or {}).get("ci"), true.get(k))
    out["_lifecycle"] = res["statistics"].get("lifecycle")
    out["_label"] = res["statistics"]["phases"]["label"]
    return out


def flat_sa_run(steps, rng, n_boot: int, path: str) -> tuple[str | None, str | None]:
    """A model whose sign agreement rises and then stays flat: "direction decays" is wrong."""
    c = truth_curves(steps)
    x = np.log10(np.maximum(np.asarray(steps, dtype=float), 0.1))
    c["sign_agreement"] = 0.5 + 0.4 / (1 + np.exp(-(x - 3.2) * 3))  # rises, then flat at 0.9
    table, samples = simulate_model(steps, c, rng, sa_layers=2, n_prompts=10, sa_spread=0.15)
    table = _as_path(table, path)
    if path != "workflow":
        samples = None
    res = model_statistics(table, {"bootstrap": n_boot, "seed": int(rng.integers(1 << 31))}, samples)
    naive = "direction decays" if (res["statistics"].get("sa_decay") or 0) < -0.10 else "other"
    return res["statistics"].get("lifecycle"), naive


def noise_run(steps, rng, n_boot: int, path: str) -> str:
    truth = truth_curves(steps)
    truth["error_reduction"] = np.zeros(len(steps))
    table, samples = simulate_model(steps, truth, rng)
    table = _as_path(table, path)
    if path != "workflow":
        samples = None
    res = model_statistics(table, {"bootstrap": n_boot, "seed": int(rng.integers(1 << 31))}, samples)
    return res["statistics"]["phases"]["label"]


def study(n_sims: int, n_boot: int, seed: int = 0, steps=PYTHIA_STEPS, paths=PATHS) -> dict:
    truth = truth_curves(steps)
    out = {}
    for path in paths:
        rng = np.random.default_rng([seed, PATHS.index(path)])
        runs = [one_run(steps, truth, rng, path, n_boot) for _ in range(n_sims)]
        cov = {}
        for k in STATS:
            v = np.array([r.get(k, np.nan) for r in runs], dtype=float)
            cov[k] = {"coverage": float(np.nanmean(v)) if np.isfinite(v).any() else None,
                      "n": int(np.isfinite(v).sum())}
        flat = [flat_sa_run(steps, rng, n_boot, path) for _ in range(n_sims)]
        noise = [noise_run(steps, rng, n_boot, path) for _ in range(n_sims)]
        out[path] = {
            "coverage": cov,
            "three_phase_labelled": float(np.mean([r["_label"] == "three-phase" for r in runs])),
            "flat_sa_direction_decays": float(np.mean([f[0] == "direction decays" for f in flat])),
            "flat_sa_direction_decays_point_rule": float(np.mean([f[1] == "direction decays" for f in flat])),
            "noise_called_emerging": float(np.mean([lab != "no emergence" for lab in noise])),
        }
    return out


def markdown(res: dict, n_sims: int, n_boot: int, seconds: float) -> str:
    paths = [p for p in PATHS if p in res]
    heads = {"workflow": "workflow (prompt bootstrap)", "table": "table (mean, std, interval columns)",
             "table-std": "table (mean, std only)"}
    lines = [f"Coverage of the 95 % intervals, {n_sims} simulated trajectories per path, {n_boot} "
             f"bootstrap replicates each ({seconds:.0f} s, load average {os.getloadavg()[0]:.2f}).", "",
             "| statistic | " + " | ".join(heads[p] for p in paths) + " |",
             "|---" * (len(paths) + 1) + "|"]
    for k in STATS:
        cells = []
        for path in paths:
            c = res[path]["coverage"][k]
            cells.append("-" if c["coverage"] is None else f"{100 * c['coverage']:.1f} % (n={c['n']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "| label check | " + " | ".join(heads[p] for p in paths) + " |",
              "|---" * (len(paths) + 1) + "|"]
    for key, text in (("three_phase_labelled", "three-phase curve labelled three-phase"),
                      ("flat_sa_direction_decays", "flat SA called \"direction decays\" (interval rule)"),
                      ("flat_sa_direction_decays_point_rule", "flat SA called \"direction decays\" (point rule)"),
                      ("noise_called_emerging", "pure noise called emerging")):
        lines.append(f"| {text} | " + " | ".join(f"{100 * res[p][key]:.1f} %" for p in paths)
                     + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sims", type=int, default=400)
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ", ".join(PATHS))
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    res = study(a.sims, a.boot, a.seed, paths=tuple(a.paths.split(",")))
    print(markdown(res, a.sims, a.boot, time.perf_counter() - t0))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
