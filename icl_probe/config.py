"""Workflow configuration: load, check against the schema, fill defaults.

Every problem is a :class:`ConfigError` that names the offending key (as a dotted
path) and what is allowed, before any job starts.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


@functools.cache
def load_schema() -> dict:
    """The config schema (parsed once; treat as read-only)."""
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error) -> str:
    """One readable sentence for a jsonschema error: key, problem, allowed values."""
    key = _key_path(error.absolute_path)
    v, value = error.validator, error.validator_value
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        return (f"unknown key(s) {', '.join(map(repr, extra))} {where}; "
                f"allowed keys: {', '.join(allowed)}")
    if v == "enum":
        return f"'{key}' is {error.instance!r}; allowed values: {', '.join(map(str, value))}"
    if v == "required":
        return f"'{key}' is missing a required key: {error.message}"
    if v == "pattern":
        desc = error.schema.get("description", f"must match {value}")
        return f"'{key}' is {error.instance!r}, which is not valid: {desc}"
    if v == "oneOf":
        desc = error.schema.get("description", "see the schema")
        return f"'{key}' is {error.instance!r}, which is not valid; allowed: {desc}"
    if v == "uniqueItems":
        return f"'{key}' has duplicate entries: {error.instance!r}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "minItems", "minProperties"):
        return f"'{key}' is {error.instance!r}: {error.message}"
    if v == "propertyNames":
        return f"a name under '{key}' is not allowed: {error.message} (use letters, digits, '.', '_', '-')"
    return f"'{key}': {error.message}"


def _validated(instance: Any, schema: dict) -> Any:
    """A copy of ``instance`` with the schema's defaults filled; ConfigError naming the first bad key."""
    from jsonschema import Draft202012Validator, validators

    errors = list(Draft202012Validator(schema).iter_errors(instance))
    if errors:
        # Report the most specific error first: errors deeper in the tree name the key.
        errors.sort(key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        deepest = max(errors, key=lambda e: len(e.absolute_path))
        raise ConfigError(f"invalid configuration: {_describe(deepest)}")

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub and name not in instance:
                instance[name] = copy.deepcopy(sub["default"])
        yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    filled = copy.deepcopy(instance)
    validators.extend(Draft202012Validator, {"properties": set_defaults})(schema).validate(filled)
    return filled


def _deep_update(into: dict, new: Mapping) -> dict:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return into


def full_schema(config: Mapping) -> dict:
    """The config schema with each registered probe's section (ours and ``probes.external``) spelled out."""
    schema = copy.deepcopy(load_schema())
    section = config.get("probes") if isinstance(config.get("probes"), Mapping) else {}
    external = section.get("external") if isinstance(section.get("external"), list) else []
    probes = probe_registry({"external": [str(e) for e in external]})
    schema["properties"]["probes"]["properties"].update({name: p.schema() for name, p in probes.items()})
    return schema


def coerce(value: Any, schema: dict) -> Any:
    """``value`` (a ``--config`` value, which Snakemake parses as YAML text: nested numbers stay
    strings) converted to the types ``schema`` asks for where that is unambiguous."""
    from jsonschema import Draft202012Validator

    if isinstance(value, Mapping):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce(v, schema.get("items", {})) for v in value]
    for sub in schema.get("oneOf", []):
        converted = coerce(value, sub)
        if Draft202012Validator(sub).is_valid(converted):
            return converted
    if isinstance(value, str):
        kind = schema.get("type")
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            return value
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "null" and value.lower() in ("null", "~", ""):
            return None
    return value


def combine_configs(base: Mapping, overlays: list[Mapping], cli: Mapping | None = None) -> dict:
    """The run's configuration from config.yaml (``base``), the ``--configfile`` files
    (``overlays``, in order) and the ``--config KEY=VALUE`` values (``cli``).

    Each overlay extends what came before key by key (nested mappings merge; a list or a
    value replaces), except ``suites``: an overlay that names suites replaces the suites
    before it, so a preset analyses its own suites only. ``--config`` values then amend
    key by key (``suites`` too), converted to the schema's types (``probes={batch_size: 8}``
    gives the integer 8).
    """
    out = copy.deepcopy(dict(base or {}))
    for overlay in overlays:
        if not isinstance(overlay, Mapping):
            raise ConfigError(f"a --configfile must be a mapping of keys to values, not {type(overlay).__name__}")
        if "suites" in overlay:
            out.pop("suites", None)
        _deep_update(out, overlay)
    if cli:
        _deep_update(out, coerce(dict(cli), full_schema({**out, **dict(cli)})))
    return out


def probe_registry(section: dict[str, Any]) -> dict:
    """The probes ``probes.external`` adds to ours; a broken probe module is a ConfigError."""
    from icl_probe.probes.base import ProbeDefinitionError
    from icl_probe.probes.registry import registry

    try:
        return registry(section.get("external", ()))
    except ProbeDefinitionError as e:
        raise ConfigError(f"invalid configuration: 'probes.external': {e}") from None


def _fill_probes(section: dict[str, Any]) -> dict[str, Any]:
    """``probes`` with ``enabled`` defaulted and each probe's section checked against its own schema."""
    from icl_probe.probes.registry import BUILTIN

    probes = probe_registry(section)
    section = {**section, "enabled": list(section.get("enabled", BUILTIN))}
    unknown = [n for n in section["enabled"] if n not in probes]
    if unknown:
        raise ConfigError(
            f"invalid configuration: 'probes.enabled' names unknown probe(s) {', '.join(map(repr, unknown))}; "
            f"known probes: {', '.join(probes)}; a probe of your own is loaded by naming its module or .py "
            "file in probes.external (docs/probes.md)")
    shared = load_schema()["properties"]["probes"]["properties"]
    schema = {"type": "object", "properties": {"probes": {
        "type": "object", "additionalProperties": False,
        "properties": {**shared, **{name: p.schema() for name, p in probes.items()}}}}}
    return _validated({"probes": section}, schema)["probes"]


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check ``config`` against the schema and return a copy with defaults filled.

    The ``probes`` section is checked against the probe registry: ``enabled`` names
    registered probes (ours and ``probes.external``), and each ``probes.<name>``
    against that probe's own settings schema.

    Raises:
        ConfigError: naming the first invalid key (dotted path) and the allowed values.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys to values, not {type(config).__name__}")
    filled = _validated(config, load_schema())
    filled["probes"] = _fill_probes(filled["probes"])
    check_semantics(filled)
    return filled


# Context lengths (tokens) of suites whose configs we know without a download;
# other models are checked by the runner once their config.json is read.
KNOWN_CONTEXT = (("EleutherAI/pythia-", 2048), ("allenai/OLMo-2-", 4096))


def context_length(rec: dict[str, Any]) -> int | None:
    """The model's context (max_position_embeddings) if known before any download."""
    if rec["source"] == "minisuite":
        from icl_probe.minisuite.build import MODELS

        return 2 * MODELS[rec["repo_id"].split("/", 1)[1]].seq_len
    for prefix, n in KNOWN_CONTEXT:
        if rec["repo_id"].startswith(prefix):
            return n
    return None


def prompt_lengths(probes: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Longest prompt (tokens) of each enabled token-count-determined probe, with the setting that sets it."""
    registered = probe_registry(probes)
    return {name: registered[name].prompt_length(probes[name]) for name in probes["enabled"]
            if registered[name].prompt_length is not None}


def check_semantics(cfg: dict[str, Any]) -> None:
    """Checks the schema cannot express: models that exist, prompts that fit, dtypes that run."""
    rt = cfg["runtime"]
    if rt["device"] == "cpu" and rt["dtype"] == "float16":
        raise ConfigError("invalid configuration: 'runtime.dtype' float16 cannot run on device cpu "
                          "(half-precision kernels are missing or slow on CPU); allowed on cpu: float32, bfloat16")
    registered = probe_registry(cfg["probes"])
    for name in cfg["probes"]["enabled"]:
        problem = registered[name].check_settings and registered[name].check_settings(cfg["probes"][name])
        if problem:
            raise ConfigError(f"invalid configuration: {problem}")
    if "settings" in cfg["suites"]:
        raise ConfigError("invalid configuration: a suite named 'settings' would share its folder with "
                          f"{cfg.get('results_dir', 'results')}/settings/ (the run's settings files); rename the suite")
    for rec in models(cfg):
        if rec["model"] == "figures":
            raise ConfigError(f"invalid configuration: a model named 'figures' (suite {rec['suite']}) would share "
                              f"its folder with the suite's figures ({rec['suite']}/figures/); rename the model")
        key = f"suites.{rec['suite']}.models.{rec['model']}"
        if rec.get("stage", 1) != 1 and rec.get("ingredient") is None:
            raise ConfigError(
                f"invalid configuration: '{key}.stage' is {rec['stage']}, but stage-2 branches are several "
                "independent ingredient runs whose steps restart: selected together they would be merged into "
                f"one trajectory. Name one with '{key}.ingredient' (stage2-ingredient<k>-...), one model entry "
                "per ingredient")
        if rec.get("ingredient") is not None and rec.get("stage", 1) == 1:
            raise ConfigError(f"invalid configuration: '{key}.ingredient' is {rec['ingredient']}, but stage 1 has "
                              f"no ingredients; set '{key}.stage: 2' or remove 'ingredient'")
        if rec["source"] == "minisuite":
            from icl_probe.minisuite.build import MODELS

            name = rec["repo_id"].split("/", 1)[1]
            if not rec["repo_id"].startswith("mini/") or name not in MODELS:
                raise ConfigError(
                    f"invalid configuration: 'suites.{rec['suite']}.models.{rec['model']}.repo_id' is "
                    f"{rec['repo_id']!r}, not a mini-suite model; allowed values: "
                    + ", ".join(f"mini/{n}" for n in MODELS))
        n_ctx = context_length(rec)
        if n_ctx is None:
            continue
        for probe, (key, length) in prompt_lengths(cfg["probes"]).items():
            if length > n_ctx:
                raise ConfigError(
                    f"invalid configuration: '{key}' gives {probe} prompts of {length} tokens, longer than "
                    f"the {n_ctx}-token context of {rec['repo_id']} (model {rec['suite']}/{rec['model']}); "
                    "lower it or disable the probe")


def device_problem(device: str) -> str | None:
    """Why ``runtime.device`` cannot run on this machine, or None if it can (imports torch)."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return (f"'runtime.device' is {device!r}, but this machine has no CUDA device that torch "
                    f"{torch.__version__} can use (torch.cuda.is_available() is False); set runtime.device: cpu, "
                    "or run the probe jobs on GPU nodes (profiles/slurm)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            return (f"'runtime.device' is {device!r}, but this machine has {torch.cuda.device_count()} CUDA "
                    f"device(s); allowed values: cpu, " + ", ".join(f"cuda:{i}" for i in range(torch.cuda.device_count())))
    if device == "mps" and not torch.backends.mps.is_available():
        return "'runtime.device' is 'mps', but this machine has no Apple GPU torch can use; set runtime.device: cpu"
    return None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    return validate_config(config or {})


def models(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten ``suites`` into one record per model: suite, model, repo_id, source, ..."""
    out = []
    for suite, scfg in config["suites"].items():
        for model, mcfg in scfg["models"].items():
            out.append({"suite": suite, "model": model, "source": scfg["source"],
                        "cache_dir": scfg.get("cache_dir"), "branch_list": scfg.get("branch_list", "live"),
                        **({"refine": scfg["refine"]} if scfg.get("refine") else {}), **mcfg})
    return out


def model_record(config: dict[str, Any], suite: str, model: str) -> dict[str, Any]:
    for rec in models(config):
        if rec["suite"] == suite and rec["model"] == model:
            return rec
    known = ", ".join(f"{r['suite']}/{r['model']}" for r in models(config))
    raise ConfigError(f"unknown model '{suite}/{model}'; the config defines: {known}")
