"""Config loading: defaults filled from the schema, bad input named by key."""

import copy
from pathlib import Path

import pytest
import yaml

from icl_probe.config import ConfigError, load_config, model_record, models, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config():
    with open(REPO / "config.yaml") as f:
        return yaml.safe_load(f)


def test_default_config_is_valid_and_defaults_are_filled(default_config):
    cfg = validate_config(default_config)
    assert cfg["probes"]["gd_readout"]["k"] == 5
    # a key left out of the file comes back with the schema's default
    del default_config["probes"]["induction"]
    filled = validate_config(default_config)
    assert filled["probes"]["induction"] == {"block_len": 32, "n_sequences": 48}
    assert filled["suites"]["mini"]["models"]["pythia-s"]["stage"] == 1


@pytest.mark.parametrize(
    "mutate, key, allowed",
    [
        (lambda c: c["runtime"].__setitem__("dtype", "fp8"), "runtime.dtype", "float32"),
        (lambda c: c.__setitem__("sweep", 1), "'sweep'", "allowed keys"),
        (lambda c: c["suites"]["mini"]["models"]["pythia-s"].__setitem__("revisions", "log:x"),
         "suites.mini.models.pythia-s.revisions", "log:N"),
        (lambda c: c["probes"].__setitem__("seeds", [1, 1]), "probes.seeds", "duplicate"),
        (lambda c: c["probes"].__setitem__("seeds", [-1]), "probes.seeds.0", "minimum"),
        (lambda c: c["probes"].__setitem__("enabled", ["gd_readout", "nope"]), "probes.enabled.1", "induction"),
        (lambda c: c["suites"]["mini"].__setitem__("source", "s3"), "suites.mini.source", "minisuite"),
        (lambda c: c["suites"]["mini"]["models"]["pythia-s"].__setitem__("repo_id", "../../etc"),
         "suites.mini.models.pythia-s.repo_id", "owner/name"),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(default_config, mutate, key, allowed):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert key in str(err.value)
    assert allowed in str(err.value)


def test_load_config_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("suites: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_models_flatten_suites_and_unknown_model_is_named(default_config):
    cfg = validate_config(default_config)
    recs = models(cfg)
    assert [(r["suite"], r["model"]) for r in recs] == [("mini", "pythia-s"), ("mini", "pythia-m"), ("mini", "olmo2-s")]
    assert model_record(cfg, "mini", "olmo2-s")["repo_id"] == "mini/olmo2-s"
    with pytest.raises(ConfigError, match="mini/pythia-s"):
        model_record(cfg, "mini", "gpt-5")
