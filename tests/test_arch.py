import pytest
import torch
from torch import nn

from conftest import make_model
from icl_probe.arch import ARCHITECTURES, UnsupportedArchitectureError, context_length, model_parts

FINAL_NORM = {"gpt_neox": nn.LayerNorm, "gpt2": nn.LayerNorm}


@pytest.mark.parametrize("model_type", ["gpt_neox", "olmo2", "gpt2", "llama"])
def test_parts_found(model_type):
    model = make_model(model_type)
    parts = model_parts(model)
    assert parts.model_type == model_type
    assert parts.n_layers == 3
    assert parts.head is model.get_output_embeddings()
    if model_type in FINAL_NORM:
        assert isinstance(parts.final_norm, FINAL_NORM[model_type])
    else:
        assert "RMSNorm" in type(parts.final_norm).__name__
    assert context_length(model.config) == 160


def test_table_paths():
    assert ARCHITECTURES["gpt_neox"].final_norm == "gpt_neox.final_layer_norm"
    assert ARCHITECTURES["olmo2"].final_norm == "model.norm"
    assert ARCHITECTURES["gpt2"].final_norm == "transformer.ln_f"


class _Cfg:
    model_type = "mamba"


class MambaLike(nn.Module):
    config = _Cfg()


def test_unsupported_architecture_names_class_and_supported():
    with pytest.raises(UnsupportedArchitectureError) as e:
        model_parts(MambaLike())
    msg = str(e.value)
    assert "MambaLike" in msg and "mamba" in msg
    for t in ("gpt_neox", "olmo2", "gpt2"):
        assert t in msg


def test_missing_module_is_an_error():
    model = make_model("gpt_neox")
    model.gpt_neox.final_layer_norm = None
    del model.gpt_neox.final_layer_norm
    with pytest.raises(UnsupportedArchitectureError, match="GPTNeoXForCausalLM"):
        model_parts(model)
