"""Figures across models (matplotlib, Agg): each function writes a PNG and a PDF and
returns (paths, caption). ``draw_all`` draws every figure in ``FIGURES`` and writes
each caption beside it as ``{name}.rst`` (what the Snakemake report shows)."""

from __future__ import annotations

from icl_probe.plotting.coemergence import plot_coemergence
from icl_probe.plotting.common import ModelData, write_caption
from icl_probe.plotting.contraction import plot_contraction
from icl_probe.plotting.emergence import plot_emergence
from icl_probe.plotting.layers import plot_layer_readout
from icl_probe.plotting.lifecycle import plot_lifecycle
from icl_probe.plotting.probe_scalars import plot_probe_scalars

FIGURES = ("emergence", "coemergence", "contraction", "lifecycle", "layer_readout")


def probes_without_figure(cfg: dict) -> dict[str, tuple[str, ...]]:
    """The enabled probes (stats settings ``probes``, ``external``) that no figure of ours draws:
    every probe that is not one of ours. Name -> its scalars."""
    from icl_probe.probes.registry import BUILTIN, registry

    probes = registry(cfg.get("external", ()))
    return {name: probes[name].scalars for name in cfg.get("probes", ()) if name not in BUILTIN and name in probes}


def draw_all(models: list[ModelData], out_dir, cfg: dict | None = None) -> dict:
    """Every figure: name -> {"paths": [png, pdf], "caption": text, "caption_file": rst}.

    cfg: the stats settings; ``readout_checkpoint`` ("final", "peak" or a step)
    picks the per-layer readout's checkpoint (default "final").
    """
    cfg = cfg or {}
    out = {}
    for name, fn in (("emergence", plot_emergence), ("coemergence", plot_coemergence),
                     ("contraction", plot_contraction), ("lifecycle", plot_lifecycle)):
        paths, caption = fn(models, out_dir)
        out[name] = {"paths": paths, "caption": caption}
    paths, caption = plot_layer_readout(models, out_dir, cfg.get("readout_checkpoint", "final"))
    out["layer_readout"] = {"paths": paths, "caption": caption}
    if others := probes_without_figure(cfg):
        paths, caption = plot_probe_scalars(models, out_dir, others)
        out["probe_scalars"] = {"paths": paths, "caption": caption}
    for name, fig in out.items():
        fig["caption_file"] = write_caption(out_dir, name, fig["caption"])
    return out


__all__ = ["FIGURES", "ModelData", "draw_all", "probes_without_figure", "plot_probe_scalars", "write_caption", "plot_coemergence", "plot_contraction", "plot_emergence",
           "plot_layer_readout", "plot_lifecycle"]
