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
        (lambda c: c["probes"].__setitem__("enabled", ["gd_readout", "nope"]), "probes.enabled", "induction"),
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


# --- property: any mutation of a valid config is either valid or a clear ConfigError ---

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True)
    | st.text(max_size=12) | st.sampled_from(["all", "log:3", "cpu", "cuda", "float16", "../x", "a/b"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_configs_are_valid_or_a_clear_error(data):
    with open(REPO / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(cfg) if p]
        path = data.draw(st.sampled_from(paths))
        parent = cfg
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(_values)
    try:
        out = validate_config(cfg)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith("invalid configuration:") and len(msg) < 2000
    else:
        assert isinstance(out, dict) and out["suites"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["probes"]["induction"].__setitem__("block_len", 1000),
         "'probes.induction.block_len' gives induction prompts of 2000 tokens"),
        (lambda c: c["probes"]["attention_sinks"].__setitem__("seq_len", 4096), "probes.attention_sinks.seq_len"),
        (lambda c: c["runtime"].__setitem__("dtype", "float16"), "allowed on cpu: float32, bfloat16"),
        (lambda c: c["suites"]["mini"]["models"]["pythia-s"].__setitem__("repo_id", "mini/gpt-9"),
         "allowed values: mini/pythia-s"),
        (lambda c: c["probes"]["associative_recall"].__setitem__("n_pairs", 100), "n_items"),
        (lambda c: c["suites"].__setitem__("olmo", {"source": "hub", "models": {"olmo2-7b": {
            "repo_id": "allenai/OLMo-2-1124-7B", "revisions": "log:4", "stage": 2}}}),
         "'suites.olmo.models.olmo2-7b.stage' is 2, but stage-2 branches are several independent ingredient"),
        (lambda c: c["suites"].__setitem__("olmo", {"source": "hub", "models": {"olmo2-7b": {
            "repo_id": "allenai/OLMo-2-1124-7B", "revisions": "log:4", "ingredient": 2}}}),
         "'suites.olmo.models.olmo2-7b.ingredient' is 2, but stage 1 has no ingredients"),
        # names whose folder is already another output's
        (lambda c: c["suites"].__setitem__("settings", c["suites"]["mini"]), "a suite named 'settings'"),
        (lambda c: c["suites"]["mini"]["models"].__setitem__("figures", c["suites"]["mini"]["models"]["pythia-s"]),
         "a model named 'figures' (suite mini)"),
    ],
)
def test_semantic_errors_name_the_key(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        validate_config(default_config)
    assert message in str(err.value)


def test_context_check_uses_the_known_pythia_context(default_config):
    default_config["suites"] = {"pythia": {"source": "hub", "models": {
        "pythia-70m": {"repo_id": "EleutherAI/pythia-70m"}}}}
    default_config["probes"]["induction"]["block_len"] = 1024  # 2048 tokens: fits exactly
    validate_config(default_config)
    default_config["probes"]["induction"]["block_len"] = 1025
    with pytest.raises(ConfigError, match="2048-token context of EleutherAI/pythia-70m"):
        validate_config(default_config)


# ---------------------------------------------------------------- the probes section reads the registry
EXAMPLE = REPO / "docs" / "examples" / "counting.py"


def test_enabled_defaults_to_every_builtin_probe(default_config):
    from icl_probe.probes.registry import BUILTIN

    default_config["probes"].pop("enabled", None)  # config.yaml leaves it to the default
    cfg = validate_config(default_config)
    assert cfg["probes"]["enabled"] == list(BUILTIN)
    assert cfg["probes"]["external"] == []


def test_an_external_probe_is_validated_and_filled_from_its_own_schema(default_config):
    default_config["probes"].update(external=[str(EXAMPLE)], enabled=["gd_readout", "counting"])
    cfg = validate_config(default_config)
    assert cfg["probes"]["counting"] == {"length": 4, "n_prompts": 16}  # the example's defaults
    default_config["probes"]["counting"] = {"length": 9}
    with pytest.raises(ConfigError, match=r"'probes\.counting\.length' is 9: .*maximum of 8"):
        validate_config(default_config)
    default_config["probes"]["counting"] = {"lenght": 4}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'lenght' under 'probes\.counting'; allowed keys: "
                                          r"length, n_prompts"):
        validate_config(default_config)


def test_an_external_probe_not_loaded_is_an_unknown_name(default_config):
    default_config["probes"]["enabled"] = ["gd_readout", "counting"]
    with pytest.raises(ConfigError, match=r"'probes\.enabled' names unknown probe\(s\) 'counting'; known probes: "
                                          r"gd_readout, .*probes\.external"):
        validate_config(default_config)


def test_a_section_of_no_probe_is_named(default_config):
    default_config["probes"]["induction_typo"] = {"block_len": 8}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'induction_typo' under 'probes'; allowed keys: .*"
                                          r"associative_recall.*gd_readout"):
        validate_config(default_config)


def test_a_broken_probe_module_is_one_line_naming_it(default_config, tmp_path):
    bad = tmp_path / "bad_probe.py"
    bad.write_text("PROBE = 3\n")
    default_config["probes"]["external"] = [str(bad)]
    with pytest.raises(ConfigError) as err:
        validate_config(default_config)
    msg = str(err.value)
    assert "\n" not in msg and "'probes.external'" in msg and "bad_probe.py" in msg and "docs/probes.md" in msg
    missing = tmp_path / "absent.py"
    default_config["probes"]["external"] = [str(missing)]
    with pytest.raises(ConfigError, match="absent.py"):
        validate_config(default_config)


def test_a_colliding_name_is_refused(default_config, tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text(EXAMPLE.read_text().replace('name="counting"', 'name="induction"'))
    default_config["probes"]["external"] = [str(clash)]
    with pytest.raises(ConfigError, match=r"'probes\.external'.*induction"):
        validate_config(default_config)


def test_semantic_checks_come_from_the_probe(default_config):
    """check_settings and prompt_length are the probe's; a disabled probe's settings are not held against a run."""
    default_config["probes"]["associative_recall"] = {"n_pairs": 70, "n_items": 128}
    with pytest.raises(ConfigError, match=r"'probes\.associative_recall\.n_pairs' is 70"):
        validate_config(default_config)
    default_config["probes"]["enabled"] = ["gd_readout", "induction"]
    assert validate_config(default_config)["probes"]["associative_recall"]["n_pairs"] == 70


# ---------------------------------------------------------------- overlays: config.yaml, --configfile, --config
from icl_probe.config import coerce, combine_configs, full_schema  # noqa: E402


def test_a_configfile_extends_config_yaml_key_by_key(default_config):
    cfg = combine_configs(default_config, [{"runtime": {"dtype": "bfloat16"}, "probes": {"induction": {"block_len": 8}}}])
    assert cfg["runtime"] == {"device": "cpu", "dtype": "bfloat16", "downloads_at_once": 1}
    assert cfg["probes"]["induction"] == {"block_len": 8, "n_sequences": 48}  # the sibling key stays
    assert cfg["suites"] == default_config["suites"] and cfg["probes"]["seeds"] == [42, 7, 123]
    assert validate_config(cfg)["runtime"]["dtype"] == "bfloat16"
    assert default_config["runtime"]["dtype"] == "float32"  # the base is not modified


def test_a_configfile_naming_suites_replaces_them(default_config):
    preset = yaml.safe_load((REPO / "presets" / "pythia.yaml").read_text())
    cfg = combine_configs(default_config, [preset])
    assert list(cfg["suites"]) == ["pythia"]
    # a later file naming suites replaces those of the earlier one; one that does not keeps them
    other = {"suites": {"own": {"source": "hub", "models": {"m": {"repo_id": "a/b"}}}}}
    assert list(combine_configs(default_config, [preset, other])["suites"]) == ["own"]
    assert list(combine_configs(default_config, [preset, {"stats": {"bootstrap": 10}}])["suites"]) == ["pythia"]
    # --config amends suites key by key
    amended = combine_configs(default_config, [], {"suites": {"mini": {"models": {"pythia-s": {"revisions": "log:3"}}}}})
    assert amended["suites"]["mini"]["models"]["pythia-s"] == {"repo_id": "mini/pythia-s", "revisions": "log:3"}
    assert set(amended["suites"]["mini"]["models"]) == {"pythia-s", "pythia-m", "olmo2-s"}


def test_config_values_are_coerced_to_the_schema_types(default_config):
    # what Snakemake hands over for --config 'probes={batch_size: 8, gd_readout: {k: 3}}' stats=...
    cli = {"probes": {"batch_size": "8", "seeds": ["1", "2"], "gd_readout": {"k": "3", "pair_format": "{x}={y}"}},
           "stats": {"readout_checkpoint": "1000", "tau_min": "0.2"}}
    cfg = validate_config(combine_configs(default_config, [], cli))
    assert cfg["probes"]["batch_size"] == 8 and cfg["probes"]["seeds"] == [1, 2]
    assert cfg["probes"]["gd_readout"]["k"] == 3 and cfg["probes"]["gd_readout"]["pair_format"] == "{x}={y}"
    assert cfg["stats"]["readout_checkpoint"] == 1000 and cfg["stats"]["tau_min"] == 0.2
    schema = full_schema(default_config)
    assert coerce({"stats": {"readout_checkpoint": "peak"}}, schema) == {"stats": {"readout_checkpoint": "peak"}}
    # a value that is not of the type stays as given, and validation names it
    with pytest.raises(ConfigError, match=r"'probes\.batch_size': 'eight' is not of type 'integer'"):
        validate_config(combine_configs(default_config, [], {"probes": {"batch_size": "eight"}}))


def test_a_third_party_probes_config_values_are_coerced(default_config):
    cli = {"probes": {"external": [str(EXAMPLE)], "counting": {"length": "5"}}}
    assert combine_configs(default_config, [], cli)["probes"]["counting"] == {"length": 5}


def test_a_misspelled_shared_probe_key_is_an_unknown_key(default_config):
    default_config["probes"]["batchsize"] = 3
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'batchsize' under 'probes'; allowed keys: .*batch_size"):
        validate_config(default_config)


def test_a_stage2_ingredient_is_its_own_model_entry(default_config):
    default_config["suites"]["olmo"] = {"source": "hub", "branch_list": "recorded", "models": {
        f"olmo2-7b-i{k}": {"repo_id": "allenai/OLMo-2-1124-7B", "revisions": "all", "stage": 2, "ingredient": k}
        for k in (1, 2)}}
    out = validate_config(default_config)
    recs = {r["model"]: r for r in models(out)}
    assert (recs["olmo2-7b-i2"]["stage"], recs["olmo2-7b-i2"]["ingredient"]) == (2, 2)
