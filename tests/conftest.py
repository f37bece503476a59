"""Fixtures: tiny seeded models of every supported architecture and a word-level tokenizer.

The tokenizer is built here with ``tokenizers`` (digits 0-9 are single tokens, pad
is unset, eos is ``<|endoftext|>``) so the tests depend on no other part of the
package and on no network.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

EOS = "<|endoftext|>"
UNK = "<unk>"
DIGITS = [str(d) for d in range(10)]
# ordinary words: lowercase alphabetic, enough for the recall items and induction blocks
WORDS = [f"w{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(300)]
VOCAB = [UNK, EOS] + DIGITS + ["->", ","] + WORDS
VOCAB_SIZE = len(VOCAB)
TINY = dict(hidden=32, layers=3, heads=4, ffn=64, ctx=160)


def make_tokenizer() -> transformers.PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()  # joins tokens with spaces
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, eos_token=EOS)
    assert fast.pad_token is None
    return fast


def make_config(model_type: str, **overrides) -> transformers.PretrainedConfig:
    h, n, a, f, c = (TINY[k] for k in ("hidden", "layers", "heads", "ffn", "ctx"))
    common = dict(vocab_size=VOCAB_SIZE, bos_token_id=1, eos_token_id=1, pad_token_id=None)
    if model_type == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=a,
                                         intermediate_size=f, max_position_embeddings=c, **common)
    elif model_type == "olmo2":
        cfg = transformers.Olmo2Config(hidden_size=h, num_hidden_layers=n, num_attention_heads=a,
                                       intermediate_size=f, max_position_embeddings=c, **common)
    elif model_type == "llama":
        cfg = transformers.LlamaConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=a,
                                       intermediate_size=f, max_position_embeddings=c, **common)
    elif model_type == "gpt2":
        cfg = transformers.GPT2Config(n_embd=h, n_layer=n, n_head=a, n_inner=f, n_positions=c, **common)
    else:
        raise ValueError(model_type)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def make_model(model_type: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(make_config(model_type, **overrides))
    with torch.no_grad():  # random init is tiny; scale up so layers move the readout
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(5.0)
    return model.eval()


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture(params=["gpt_neox", "olmo2", "gpt2"])
def arch_model(request):
    return make_model(request.param)


@pytest.fixture
def neox_model():
    return make_model("gpt_neox")


@pytest.fixture
def small_settings():
    """A probes section like config.yaml's, shrunk for tests."""
    return {
        "enabled": ["gd_readout", "induction", "attention_sinks", "associative_recall"],
        "seeds": [42, 7],
        "batch_size": 5,
        "bootstrap": 50,
        "gd_readout": {"k": 3, "n_prompts": 8, "pair_format": "{x} -> {y}", "query_format": "{x} ->",
                       "separator": "\n"},
        "induction": {"block_len": 8, "n_sequences": 6},
        "attention_sinks": {"n_sequences": 6, "seq_len": 12, "eps": 0.3},
        "associative_recall": {"n_items": 32, "n_pairs": 5, "n_prompts": 6},
    }


@pytest.fixture
def saved_model(tmp_path, tokenizer):
    """A tiny GPT-NeoX checkpoint and its tokenizer saved as a local model folder."""
    path = tmp_path / "tiny-neox"
    make_model("gpt_neox").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


OUTPUT_PROJECTIONS = {
    "gpt_neox": ("attention.dense", "mlp.dense_4h_to_h"),
    "olmo2": ("self_attn.o_proj", "mlp.down_proj"),
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
}


def zero_blocks(model: torch.nn.Module) -> torch.nn.Module:
    """Zero every block's output projections: the residual stream passes through unchanged."""
    names = OUTPUT_PROJECTIONS[model.config.model_type]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(f".{n}." in name for n in names):
                p.zero_()
    return model


def sink_gpt2(layer: int = 0, strength: float = 100.0) -> torch.nn.Module:
    """A GPT-2 whose heads in ``layer`` all attend (almost) only to position 0.

    Position 0's embedding carries a large value in one feature j that no token or
    other position has; every head's key reads feature j and its query is a large
    constant, so position 0 wins the softmax at every query.
    """
    model = make_model("gpt2")
    d, n_head = model.config.n_embd, model.config.n_head
    hd, j = d // n_head, d - 1
    with torch.no_grad():
        model.transformer.wte.weight[:, j] = 0.0
        model.transformer.wpe.weight[:, j] = 0.0
        model.transformer.wpe.weight[0, j] = 50.0
        attn = model.transformer.h[layer].attn.c_attn  # Conv1D: x @ W + b, W [d, 3d] = [q | k | v]
        attn.weight[:, : 2 * d] = 0.0
        attn.bias[: 2 * d] = 0.0
        for h in range(n_head):
            attn.bias[h * hd] = strength  # query: constant
            attn.weight[j, d + h * hd] = 1.0  # key: feature j
    return model.eval()


@pytest.fixture(scope="session")
def default_workflow(tmp_path_factory):
    """The default config run end to end (mini-suite build included) in a temporary folder."""
    import shutil

    from workflow_utils import REPO, run_snakemake

    workdir = tmp_path_factory.mktemp("default-workflow")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    proc = run_snakemake(workdir, "--cores", "2")
    # what the user saw: Snakemake's console (stderr) and the summary printed at the end (stdout)
    (workdir / "console.txt").write_text(proc.stderr + proc.stdout)
    return workdir


@pytest.fixture(scope="session")
def minisuite_scenario(default_workflow, tmp_path_factory):
    """The .test/config_minisuite scenario run to the end, on a copy of the mini-suite that
    the default run built (so nothing is trained twice)."""
    from workflow_utils import run_snakemake, scenario_config, workdir_with_minisuite

    workdir = workdir_with_minisuite(tmp_path_factory.mktemp("scenario-minisuite"), default_workflow,
                                     scenario_config("minisuite"))
    run_snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture
def count_loads(monkeypatch):
    """The (args, kwargs) of every AutoModelForCausalLM.from_pretrained call of the test (a model load)."""
    calls = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", counting)
    return calls
