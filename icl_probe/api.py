"""``icl_probe.probe``: the workflow's probes on a causal LM already loaded in a notebook.

The prompts are built in memory from the given tokenizer and the model's config, as the
workflow's prompts job builds them, and the probes run as its checkpoint job runs them, so the
numbers are those of the result files for the same settings (and the same weights and dtype).
"""

from __future__ import annotations

from icl_probe.config import validate_config
from icl_probe.io import _jsonable
from icl_probe.lens import Lens
from icl_probe.prompts import build_prompts
from icl_probe.runner import _check_prompts, model_limits, pad_id_of, run_probe

# validate_config checks a whole config, which needs a suite; the probes never read it
_NO_SUITES = {"none": {"source": "hub", "models": {"none": {"repo_id": "a/b"}}}}


def probe(model, tokenizer, probes: list[str] | None = None, settings: dict | None = None, *,
          bootstrap: int | None = None) -> dict[str, dict]:
    """Run ``probes`` (default: every built-in one) on a loaded Hugging Face causal LM.

    ``settings`` is a (partial) ``probes`` section of config.yaml, filled with the defaults and
    checked as the workflow checks it (a bad key is a one-line :class:`~icl_probe.config.ConfigError`);
    a third-party probe is named in ``settings={"external": [...]}``. ``bootstrap`` overrides
    ``settings["bootstrap"]`` (0: no intervals, fastest). The model runs in eval mode; its
    training mode is restored afterwards. Returns ``{probe: {"scalars", "per_seed", "per_layer",
    "per_head", "per_prompt"}}``, what the result files hold under those keys.
    """
    section = dict(settings or {})
    if probes is not None:
        section["enabled"] = list(probes)
    if bootstrap is not None:
        section["bootstrap"] = bootstrap
    section = validate_config({"suites": _NO_SUITES, "probes": section})["probes"]
    prompts = build_prompts(tokenizer, section, **model_limits(model.config))
    _check_prompts(prompts, section, tokenizer, model)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        lens, passes, pad_id = Lens(model), {}, pad_id_of(tokenizer, prompts)
        return {name: _jsonable(run_probe(lens, name, prompts, section, pad_id=pad_id, passes=passes))
                for name in section["enabled"]}
    finally:
        for m, training in modes.items():
            m.training = training
