"""All per-model statistics across checkpoints, from one model's table.

``model_statistics(table, cfg)`` picks the trajectories it needs from the table
(one row per checkpoint, columns as in table.csv), calls the pure statistic
functions, and attaches bootstrap intervals. Statistics whose columns are absent
are skipped with a note under ``skipped``; nothing here reads or writes files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from icl_probe.stats import coemergence, contraction, emergence, lifecycle
from icl_probe.stats.bootstrap import parametric_bootstrap
from icl_probe.stats.table import ID_COLUMNS

DEFAULTS = {
    "tau_min": 0.1,
    "er_decay_threshold": -0.15,
    "sa_decay_threshold": -0.10,
    "forecast_step": 4000,
    "bootstrap": 1000,
    "seed": 0,
    "n_seeds": 3,
}


def settings(cfg: dict | None) -> dict:
    """The ``stats`` config section over the defaults."""
    return {**DEFAULTS, **(cfg or {})}


def trajectory(table: pd.DataFrame) -> tuple[np.ndarray, dict, dict]:
    """(steps (n,), means name -> (n,), stds name -> (n,)) ordered by step.

    A ``main`` row is dropped when another revision has the same step (the
    documented alias of the final checkpoint).
    """
    t = table
    if "revision" in t:
        dup_main = (t["revision"] == "main") & t["step"].duplicated(keep=False)
        t = t[~dup_main]
    t = t.sort_values("step", kind="stable")
    steps = t["step"].to_numpy(dtype=float)
    means, stds = {}, {}
    for col in t.columns:
        if col in ID_COLUMNS or col.endswith(("_ci_lo", "_ci_hi")) or not pd.api.types.is_numeric_dtype(t[col]):
            continue
        if col.endswith("_std"):
            stds[col[:-4]] = t[col].to_numpy(dtype=float)
        else:
            means[col] = t[col].to_numpy(dtype=float)
    if "rho_pred" not in means and "slope_alpha" in means:
        means["rho_pred"] = 1.0 - means["slope_alpha"]
    return steps, means, stds


def scalar_statistics(steps: np.ndarray, m: dict) -> dict:
    """The bootstrapped scalars: name -> float or None. m: name -> (n,) means."""
    out: dict = {}
    er = m.get("error_reduction")
    zc_step = None
    if er is not None:
        pk = emergence.peak(steps, er)
        out["peak_er"] = pk["peak_er"]
        out["peak_step"] = pk["peak_step"]
        hm = emergence.half_max_step(steps, er)
        out["half_max_step"] = hm["interpolated"]
        zc_step = emergence.zero_crossing(steps, er)["interpolated"]
        out["zero_crossing_step"] = zc_step
        out["er_decay"] = lifecycle.er_decay(er)
        for name, ch in lifecycle.heldout_change(pk["peak_index"], m).items():
            out[f"heldout_change.{name}"] = ch["change"]
    if "sign_agreement" in m:
        out["sa_decay"] = lifecycle.sa_decay(m["sign_agreement"])
    if "rho_pred" in m and "rho_obs" in m:
        ra = contraction.rate_agreement(m["rho_pred"], m["rho_obs"], m.get("rate_rel_error"))
        out["rate_agreement.pearson"] = ra["pearson"]
        out["rate_agreement.spearman"] = ra["spearman"]
        out["rate_agreement.median_rate_rel_error"] = ra["median_rate_rel_error"]
    if "total_contraction" in m:
        cs = contraction.contraction_summary(steps, m["total_contraction"])
        out["contraction.total_contraction_min"] = cs.get("total_contraction_min")
        out["contraction.total_contraction_final"] = cs.get("total_contraction_final")
    if "late_early_ratio" in m:
        hr = coemergence.half_rise(steps, m["late_early_ratio"])["interpolated"]
        out["sink_half_rise_step"] = hr
        if er is not None:
            out["co_emergence_lag"] = coemergence.co_emergence_lag(hr, zc_step)
    return out


def model_statistics(table: pd.DataFrame, cfg: dict | None = None) -> dict:
    """Every per-model statistic of ../shared/spec/metrics.md for one model.

    table: one row per checkpoint (any order), at least ``step`` and the metric
    columns each statistic needs; cfg: the ``stats`` config section. Returns a
    JSON-ready dict: ``statistics`` (nested results), ``bootstrap`` (95 %
    intervals of the scalar statistics, see ``icl_probe.stats.bootstrap``) and
    ``skipped`` (statistic -> why it was not computed).
    """
    cfg = settings(cfg)
    steps, m, sd = trajectory(table)
    st: dict = {}
    skipped: dict = {}

    def need(name, *cols, any_of=False):
        have = [c for c in cols if c in m]
        ok = bool(have) if any_of else len(have) == len(cols)
        if not ok:
            missing = [c for c in cols if c not in m]
            skipped[name] = ("needs one of the columns " if any_of else "needs the column(s) ") + ", ".join(missing)
        return ok

    if not len(steps):
        return {"n_checkpoints": 0, "statistics": {}, "bootstrap": {}, "skipped": {"all": "no checkpoints"}}

    if need("emergence", "error_reduction"):
        er = m["error_reduction"]
        pk = emergence.peak(steps, er)
        st["peak_er"], st["peak_step"] = pk["peak_er"], pk["peak_step"]
        st["half_max_step"] = emergence.half_max_step(steps, er)
        st["zero_crossing"] = emergence.zero_crossing(steps, er)
        if "error_reduction" not in sd:
            skipped["phases.tau_from_std"] = "no error_reduction_std column: tau = tau_min"
        st["phases"] = emergence.phases(steps, er, sd.get("error_reduction"), cfg["tau_min"])
        st["er_decay"] = lifecycle.er_decay(er)
        if need("heldout_change", *lifecycle.HELDOUT_METRICS, any_of=True):
            st["heldout_change"] = lifecycle.heldout_change(pk["peak_index"], m)
    if need("sa_decay", "sign_agreement"):
        st["sa_decay"] = lifecycle.sa_decay(m["sign_agreement"])
    if "er_decay" in st or "sa_decay" in st:
        st["lifecycle"] = lifecycle.lifecycle_label(st.get("er_decay"), st.get("sa_decay"),
                                                    cfg["er_decay_threshold"], cfg["sa_decay_threshold"])
    if need("rate_agreement", "rho_pred", "rho_obs"):
        st["rate_agreement"] = contraction.rate_agreement(m["rho_pred"], m["rho_obs"], m.get("rate_rel_error"))
    if need("contraction", "total_contraction", "rho2_per_layer", "geometric_fit_r2", any_of=True):
        st["contraction"] = contraction.contraction_summary(
            steps, m.get("total_contraction"), m.get("rho2_per_layer"), m.get("geometric_fit_r2"))
    if need("sinks", "late_early_ratio"):
        st["sinks"] = coemergence.sink_trajectory(steps, m["late_early_ratio"])
        if "error_reduction" in m:
            st["co_emergence_lag"] = coemergence.co_emergence_lag(
                st["sinks"]["half_rise"]["interpolated"], st["zero_crossing"]["interpolated"])
    boot = parametric_bootstrap(lambda rep: scalar_statistics(steps, rep), m, sd,
                                n_boot=cfg["bootstrap"], seed=cfg["seed"], n_seeds=cfg["n_seeds"])
    boot.update(method="parametric: Normal(mean, std / sqrt(n_seeds)) per checkpoint",
                n=int(cfg["bootstrap"]), seed=int(cfg["seed"]), n_seeds=int(cfg["n_seeds"]))
    return {
        "n_checkpoints": int(len(steps)),
        "steps": steps.tolist(),
        "thresholds": {k: cfg[k] for k in ("tau_min", "er_decay_threshold", "sa_decay_threshold")},
        "statistics": st,
        "bootstrap": boot,
        "skipped": skipped,
    }
