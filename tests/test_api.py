"""icl_probe.probe: the workflow's numbers on a model loaded in a notebook."""

import json
import subprocess
import sys

import pytest
import transformers

import icl_probe
from conftest import make_tokenizer
from icl_probe.config import ConfigError
from icl_probe.probes.registry import BUILTIN
from icl_probe.runner import make_prompts, probe_checkpoint

KEYS = ("scalars", "per_seed", "per_layer", "per_head", "per_prompt")


@pytest.fixture
def loaded(saved_model):
    return transformers.AutoModelForCausalLM.from_pretrained(saved_model), make_tokenizer()


def test_the_numbers_are_the_workflows(saved_model, small_settings, loaded, tmp_path):
    model, tok = loaded
    model.train()
    got = icl_probe.probe(model, tok, settings=small_settings)
    assert model.training and all(m.training for m in model.modules())  # its mode is given back
    make_prompts(str(saved_model), None, tmp_path / "prompts", small_settings)
    files = probe_checkpoint(str(saved_model), None, tmp_path / "out", small_settings, tmp_path / "prompts",
                             loaded=(model, tok))
    assert list(got) == list(BUILTIN) == list(files)
    for name, path in files.items():
        written = json.loads(path.read_text())
        assert set(got[name]) == set(KEYS)
        assert got[name]["scalars"] == written["scalars"]  # exactly, not approximately
        assert got[name]["per_layer"] == written["per_layer"]
        assert got[name] == {k: written[k] for k in KEYS}


def test_a_subset_of_probes(small_settings, loaded):
    model, tok = loaded
    model.eval()
    full = icl_probe.probe(model, tok, settings=small_settings, bootstrap=0)
    one = icl_probe.probe(model, tok, ["associative_recall"], settings=small_settings, bootstrap=0)
    assert list(one) == ["associative_recall"] and not model.training
    assert one["associative_recall"]["per_seed"] == full["associative_recall"]["per_seed"]
    assert one["associative_recall"]["scalars"]["ar_acc_ci"] == [None, None]  # no bootstrap


@pytest.mark.parametrize("probes, settings, key", [
    (["nope"], None, "'probes.enabled' names unknown probe(s) 'nope'"),
    (None, {"induction": {"blok_len": 8}}, "unknown key(s) 'blok_len' under 'probes.induction'"),
    (None, {"batch_size": 0}, "'probes.batch_size' is 0"),
])
def test_bad_settings_are_one_line_config_errors(loaded, probes, settings, key):
    model, tok = loaded
    with pytest.raises(ConfigError) as err:
        icl_probe.probe(model, tok, probes, settings)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_import_stays_light():
    code = "import sys, icl_probe; assert 'icl_probe.api' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        icl_probe.nothing_here
