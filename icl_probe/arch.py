"""Architecture differences in one table keyed by ``config.model_type``.

Everything the lens and the probes need to know about a model family lives in
:data:`ARCHITECTURES`: the backbone (the module that runs the blocks), the final
norm and the block list, as dotted attribute paths from the ``*ForCausalLM``
model. The output head is always ``model.get_output_embeddings()``.
An unknown ``model_type`` is a loud error, never a silent skip.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """Dotted paths (from the causal-LM model) to the parts the lens needs."""

    backbone: str  # the base model: runs embedding, blocks and final norm
    final_norm: str  # applied to the residual stream just before the head
    blocks: str  # nn.ModuleList of transformer blocks, in order


ARCHITECTURES: dict[str, ArchSpec] = {
    "gpt_neox": ArchSpec("gpt_neox", "gpt_neox.final_layer_norm", "gpt_neox.layers"),
    "olmo2": ArchSpec("model", "model.norm", "model.layers"),
    "llama": ArchSpec("model", "model.norm", "model.layers"),
    "gpt2": ArchSpec("transformer", "transformer.ln_f", "transformer.h"),
}


class UnsupportedArchitectureError(ValueError):
    """Raised for a model whose final norm, blocks or head cannot be found."""


def _get(model: nn.Module, path: str) -> nn.Module:
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ModelParts:
    """The modules of one loaded model that the lens uses."""

    model_type: str
    backbone: nn.Module
    final_norm: nn.Module
    blocks: nn.ModuleList
    head: nn.Module

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def arch_spec(model: nn.Module) -> ArchSpec:
    """The :class:`ArchSpec` of ``model`` (looked up by ``model.config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} (model_type={model_type!r}) is not supported by the logit lens; "
            f"supported model_type values: {', '.join(sorted(ARCHITECTURES))}. "
            "Add its backbone, final norm and blocks to icl_probe.arch.ARCHITECTURES."
        )
    return ARCHITECTURES[model_type]


def model_parts(model: nn.Module) -> ModelParts:
    """Resolve the backbone, final norm, blocks and head of ``model``."""
    spec = arch_spec(model)
    try:
        parts = {f: _get(model, getattr(spec, f)) for f in ("backbone", "final_norm", "blocks")}
    except AttributeError as e:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} (model_type={model.config.model_type!r}): cannot find a module "
            f"listed in icl_probe.arch.ARCHITECTURES ({e})"
        ) from e
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise UnsupportedArchitectureError(f"{type(model).__name__}: get_output_embeddings() returned no head with a weight")
    return ModelParts(model_type=model.config.model_type, head=head, **parts)


def context_length(config) -> int | None:
    """The longest sequence the model's positions allow (``max_position_embeddings``)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    return None
