"""Constructed trajectories and result files with known answers, for tests and demos.

``write_model(...)`` writes a manifest.json and per-checkpoint
``{revision}/{probe}.json`` files in the documented format (docs/ARCHITECTURE.md)
from given per-checkpoint curves, so the table, QC and statistics can be checked
without running a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from icl_probe import SCHEMA_VERSION
from icl_probe.io import write_json
from icl_probe.stats.table import SCALARS

PYTHIA_STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 143000)


def three_phase_er(steps) -> np.ndarray:
    """ER (digits): 0 up to step 32, a valley to -0.6 at 512, a rise through 0 and a
    peak of 2.0 at 16000, then attenuation to 1.4 at 143000 (log-step linear pieces).

    The zero crossing is between 1000 (ER -0.3) and 2000 (ER +0.5): linear in log10
    step it is at 10**(3 + log10(2) * 0.3 / 0.8) (see tests).
    """
    knots = {0: 0.0, 1: 0.0, 32: 0.02, 512: -0.6, 1000: -0.3, 2000: 0.5, 4000: 1.2, 16000: 2.0, 143000: 1.4}
    return _piecewise(steps, knots)


def _piecewise(steps, knots: dict) -> np.ndarray:
    ks = np.array(sorted(knots), dtype=float)
    kx = np.log10(np.maximum(ks, 0.1))
    ky = np.array([knots[k] for k in sorted(knots)])
    return np.interp(np.log10(np.maximum(np.asarray(steps, dtype=float), 0.1)), kx, ky)


def default_curves(steps, er=None, scale: float = 1.0) -> dict:
    """A full set of per-checkpoint curves (name -> (n,)) around an ER trajectory."""
    s = np.asarray(steps, dtype=float)
    er = three_phase_er(s) * scale if er is None else np.asarray(er, dtype=float)
    x = np.log10(np.maximum(s, 0.1))
    rise = 1 / (1 + np.exp(-(x - 3.2) * 3))  # 0 -> 1 around step ~1600
    sa = 0.5 + 0.4 * rise - 0.02 * (x > 4.5)
    slope = -0.3 * rise
    mean_err_final = 2.5 - er * 0.0 - 0.2 * rise
    rho_pred, rho_obs = 1 - slope, 1 - slope * 0.9 + 0.01 * np.sin(x)
    return {
        "error_reduction": er,
        "mean_err_final": mean_err_final,
        "mean_err_embed": mean_err_final + er,
        "sign_agreement": sa,
        "slope_alpha": slope,
        "rho_pred": rho_pred,
        "rho_obs": rho_obs,
        "rate_rel_error": np.abs(rho_pred - rho_obs) / rho_obs,
        "depth_rho": 0.6 * rise,
        "total_contraction": 1 - 0.5 * rise,
        "rho2_per_layer": np.where(rise > 0.5, 0.8, np.nan),
        "geometric_fit_r2": np.where(rise > 0.5, 0.9, np.nan),
        "induction_acc": 0.05 + 0.8 * rise,
        "induction_logp": -6 + 5 * rise,
        "icl_score": 3 * rise,
        "late_early_ratio": 1 + 2 / (1 + np.exp(-(x - 2.6) * 3)),
        "ar_acc": 0.02 + 0.5 * rise - 0.1 * (x > 4.5),
        "ar_logp": -5 + 3 * rise,
    }


def write_model(model_dir, suite: str, model: str, steps=PYTHIA_STEPS, curves: dict | None = None,
                std: float = 0.05, n_layers: int = 6, tokens_per_step: int = 2_097_152,
                weights: dict | None = None, skip: tuple = (), extra_revisions: tuple = ()) -> Path:
    """Write manifest.json and every probe's result for each step; returns the manifest path.

    curves: name -> (n,) (default ``default_curves``); std: every scalar's ``_std``
    (absolute, in the metric's units); weights: revision -> sha256 to record
    (default: a distinct hash per revision); skip: revisions listed in the
    manifest but not written (missing checkpoints); extra_revisions: manifest
    entries added as they are (e.g. a ``duplicate_of`` entry).
    """
    model_dir = Path(model_dir)
    steps = list(steps)
    curves = default_curves(steps) if curves is None else curves
    entries = []
    for i, step in enumerate(steps):
        rev = f"step{step}"
        sha = (weights or {}).get(rev) or hashlib.sha256(f"{model}/{rev}".encode()).hexdigest()
        commit = hashlib.sha1(f"{model}/{rev}".encode()).hexdigest()
        entries.append({"revision": rev, "step": step, "tokens": step * tokens_per_step, "commit": commit,
                        "files": [{"path": "model.safetensors", "size": 1, "sha256": sha}],
                        "duplicate_of": None})
        if rev in skip:
            continue
        for probe, names in SCALARS.items():
            scalars, per_seed = {}, {}
            for n in names:
                v = float(curves[n][i]) if n in curves else 0.0
                if not np.isfinite(v) and np.isnan(v):
                    scalars[n], scalars[n + "_std"], scalars[n + "_ci"] = None, None, [None, None]
                    continue
                scalars[n], scalars[n + "_std"] = v, std
                scalars[n + "_ci"] = [v - 2 * std, v + 2 * std]
                per_seed[n] = [v - std * np.sqrt(1.5), v, v + std * np.sqrt(1.5)]
            per_layer = _per_layer(probe, curves, i, n_layers)
            write_json(model_dir / rev / f"{probe}.json", {
                "schema_version": SCHEMA_VERSION, "probe": probe, "model": model, "suite": suite,
                "repo_id": f"{suite}/{model}", "revision": rev, "step": step,
                "tokens": step * tokens_per_step,
                "provenance": {"commit": commit, "weight_sha256": {"model.safetensors": sha}},
                "settings": {}, "scalars": scalars, "per_seed": per_seed, "per_layer": per_layer,
                "per_head": {}, "timing": {"seconds": 0.0}})
    entries += [dict(e) for e in extra_revisions]
    manifest = {"schema_version": SCHEMA_VERSION, "suite": suite, "model": model,
                "repo_id": f"{suite}/{model}", "source": "local", "cache_dir": None,
                "tokens_per_step": tokens_per_step, "revisions": entries}
    return write_json(model_dir / "manifest.json", manifest)


def _per_layer(probe: str, curves: dict, i: int, n_layers: int) -> dict:
    layers = np.arange(n_layers + 1)
    if probe == "gd_readout" and "mean_err_embed" in curves:
        e0, eL = curves["mean_err_embed"][i], curves["mean_err_final"][i]
        return {"mean_err": (e0 + (eL - e0) * layers / n_layers).tolist()}
    if probe == "induction" and "total_contraction" in curves:
        tc = curves["total_contraction"][i]
        return {"surprisal": (8.0 * tc ** (layers / n_layers)).tolist()}
    if probe == "attention_sinks" and "late_early_ratio" in curves:
        return {"sink_frac": (0.2 * (1 + (curves["late_early_ratio"][i] - 1) * layers / n_layers)).tolist()}
    return {}


def simulate_model(steps, truth: dict, rng: np.random.Generator, *, n_seeds: int = 3, n_prompts: int = 80,
                   er_sd: float = 0.8, persistence: float = 0.7, sa_layers: int = 6, sa_spread: float = 0.08,
                   sink_sd: float = 0.3, n_sequences: int = 100, ci_boot: int = 200,
                   model: str = "sim") -> tuple:
    """One simulated rerun of the probes on a model whose true curves are ``truth``.

    The noise has the probes' own structure: ``n_seeds`` prompt sets, each of
    ``n_prompts`` prompts drawn once and read at every checkpoint, so a prompt's
    deviation persists across checkpoints (correlation ``persistence``).
    truth: name -> (n,) for any of
    - ``error_reduction`` (digits): per prompt mu + er_sd x (persistent and fresh normal parts);
    - ``sign_agreement`` (fraction): per prompt Binomial(sa_layers, q + sa_spread x v), v
      uniform(-1, 1) fixed per prompt (the spread shrinks near 0 and 1), so the
      expected pooled fraction is exactly q;
    - ``late_early_ratio``: per sequence late and early sink fractions with mean-one
      log-normal factors (log-sd ``sink_sd``), so the ratio of expectations is exactly R;
    other names are copied without noise. Returns (table, samples): a table.csv-like
    DataFrame (means, population std over seeds, per-checkpoint 95 % interval from a
    ``ci_boot``-replicate prompt bootstrap) and revision -> metric -> {"num", "den", "group"}
    as ``icl_probe.stats.table.read_per_prompt`` gives.
    """
    import pandas as pd

    from icl_probe.stats.bootstrap import _prompt_weights, prompt_replicates

    s = np.asarray(steps, dtype=float)
    c = s.size
    revs = [f"step{int(x)}" for x in s]
    per_metric = {}

    def mix(shape_persist, shape_fresh):
        u = rng.standard_normal(shape_persist)
        e = rng.standard_normal(shape_fresh)
        return persistence * u[None] + np.sqrt(1 - persistence ** 2) * e

    if "error_reduction" in truth:
        mu = np.asarray(truth["error_reduction"], dtype=float)
        z = mix((n_seeds, n_prompts), (c, n_seeds, n_prompts))
        per_metric["error_reduction"] = (mu[:, None, None] + er_sd * z, None, "gd_readout")
    if "sign_agreement" in truth:
        q = np.asarray(truth["sign_agreement"], dtype=float)
        v = rng.uniform(-1, 1, (n_seeds, n_prompts))
        width = np.minimum(sa_spread, np.minimum(q, 1 - q))
        p = np.clip(q[:, None, None] + width[:, None, None] * v[None], 0, 1)
        agree = rng.binomial(sa_layers, p).astype(float)
        per_metric["sign_agreement"] = (agree, np.full(agree.shape, float(sa_layers)), "gd_readout")
    if "late_early_ratio" in truth:
        r = np.asarray(truth["late_early_ratio"], dtype=float)
        f = lambda: np.exp(sink_sd * mix((n_seeds, n_sequences), (c, n_seeds, n_sequences))  # noqa: E731
                           - sink_sd ** 2 / 2)
        early = 0.2 * f()
        late = 0.2 * r[:, None, None] * f()
        per_metric["late_early_ratio"] = (late, early, "attention_sinks")
    table = pd.DataFrame({"suite": "sim", "model": model, "revision": revs, "step": s.astype(int),
                          "tokens": s * 2_097_152})
    for name, (num, den, group) in per_metric.items():
        d = np.ones_like(num) if den is None else den
        per_seed = num.sum(-1) / d.sum(-1)  # (C, S)
        table[name] = per_seed.mean(-1)
        table[name + "_std"] = per_seed.std(-1)
        if ci_boot:
            w = _prompt_weights(rng, ci_boot, num.shape[1], num.shape[2])
            reps = prompt_replicates(num, den, w)
            table[name + "_ci_lo"], table[name + "_ci_hi"] = np.percentile(reps, [2.5, 97.5], axis=0)
    for name, vals in truth.items():
        if name not in per_metric:
            table[name] = np.asarray(vals, dtype=float)
    samples = {rev: {name: {"num": num[i].tolist(), "den": None if den is None else den[i].tolist(),
                            "group": group}
                     for name, (num, den, group) in per_metric.items()}
               for i, rev in enumerate(revs)}
    return table, samples
