"""Probe one checkpoint: load it once, run every enabled probe, write one JSON per probe.

This is the DAG step "checkpoint -> activations -> per-checkpoint results". What
each probe needs is in its :class:`icl_probe.probes.base.Probe` (from the registry):
its model passes run here, each once per job however many probes need it (in
batches, under ``torch.inference_mode``), and its pure metric function turns the
captured arrays into numbers.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
import torch

import icl_probe
from icl_probe.arch import context_length
from icl_probe.config import ConfigError, device_problem
from icl_probe.hub.errors import DamagedCheckpointError
from icl_probe.hub.integrity import check_cached_checkpoint
from icl_probe.io import read_json, write_json
from icl_probe.lens import Lens
from icl_probe.progress import progress
from icl_probe.probes.common import summarise
from icl_probe.probes.registry import external_of, get, registry, source_sha256
from icl_probe.prompts import (
    PromptError, build_probe_prompts, build_prompts, check_context, load_prompts, prompt_settings,
    prompt_sources, sequences_of, write_prompts,
)

log = logging.getLogger("icl_probe")

BOOTSTRAP_SEED = 0  # the bootstrap RNG is seeded, so results are byte-identical across runs


# --------------------------------------------------------------------- loading
def probe_settings_of(settings: dict) -> dict:
    """The ``probes`` section: ``settings`` itself, or ``settings["probes"]`` for a whole config."""
    inner = settings.get("probes")
    return inner if isinstance(inner, dict) and "seeds" in inner else settings


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    return getattr(torch, dtype)


@contextmanager
def _checked_files(repo_id: str, revision: str | None, cache_dir, local_files_only: bool, *,
                   tokenizer: bool = False, weights: bool = False):
    """Around a ``from_pretrained``: the files it reads (config.json always, plus the tokenizer or the
    weights) are checked first when loading only from disk, and after a failure otherwise, so a damaged
    file is reported as such (not as a library traceback)."""
    if local_files_only:
        check_cached_checkpoint(repo_id, revision, cache_dir, tokenizer=tokenizer, weights=weights, required=True)
    try:
        yield
    except Exception as err:
        try:
            check_cached_checkpoint(repo_id, revision, cache_dir, tokenizer=tokenizer, weights=weights)
        except DamagedCheckpointError as damaged:
            raise damaged from err
        raise


def load_tokenizer(repo_id: str, revision: str | None, *, cache_dir=None, local_files_only: bool = False):
    """The checkpoint's tokenizer, with ``pad_token`` set to eos when it has none."""
    from transformers import AutoTokenizer

    with _checked_files(repo_id, revision, cache_dir, local_files_only, tokenizer=True):
        tok = AutoTokenizer.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                            local_files_only=local_files_only)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_checkpoint(repo_id: str, revision: str | None, *, cache_dir=None, local_files_only: bool = False,
                    device: str = "cpu", dtype: str = "float32"):
    """Load model and tokenizer of one revision (one ``from_pretrained`` each, no remote code)."""
    from transformers import AutoModelForCausalLM

    if problem := device_problem(str(device)):
        raise ConfigError(problem)
    tok = load_tokenizer(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only)
    with _checked_files(repo_id, revision, cache_dir, local_files_only, weights=True):
        lm = AutoModelForCausalLM.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                                  local_files_only=local_files_only, dtype=_torch_dtype(dtype))
    return lm.to(device).eval(), tok


def model_limits(config) -> dict:
    """What a model's config bounds in its prompts: ``context_length`` and ``vocab_limit``, the keyword
    arguments of :func:`icl_probe.prompts.build_probe_prompts`."""
    return {"context_length": context_length(config), "vocab_limit": getattr(config, "vocab_size", None)}


def make_prompts(repo_id: str, revision: str | None, out, settings: dict, cache_dir=None,
                 local_files_only: bool = False, probe: str | None = None):
    """Write prompt files, loading only the tokenizer and config (never the weights).

    ``settings``: the config's ``probes`` section, or the whole config. With ``probe``,
    writes that probe's prompt file at ``out`` and returns its path; otherwise ``out``
    is a folder and every enabled probe's file is written there as ``{probe}.json``
    (returns ``{probe: path}``).
    """
    from transformers import AutoConfig

    settings = probe_settings_of(settings)
    tok = load_tokenizer(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only)
    with _checked_files(repo_id, revision, cache_dir, local_files_only):
        config = AutoConfig.from_pretrained(repo_id, revision=revision, cache_dir=cache_dir,
                                            local_files_only=local_files_only)
    kwargs = dict(model_limits(config), source={"repo_id": repo_id, "revision": revision})
    if probe is not None:
        return write_prompts(out, build_probe_prompts(tok, probe, settings, **kwargs))
    return {name: write_prompts(Path(out) / f"{name}.json", build_probe_prompts(tok, name, settings, **kwargs))
            for name in prompt_sources(settings)}


# --------------------------------------------------------------------- model passes
def _probes_of(settings: dict) -> dict:
    return registry(external_of(settings))


def run_probe(lens: Lens, probe: str, prompts: dict, settings: dict, *, pad_id: int,
              passes: dict | None = None) -> dict:
    """One probe on a loaded model: ``{"scalars", "per_seed", "per_layer", "per_head", "per_prompt"}``.

    ``prompts`` maps probe name to prompt file (:func:`load_prompt_files`); ``passes`` caches the
    model passes by name, so probes that need the same pass share one run.
    """
    p = get(probe, external_of(settings))
    passes = {} if passes is None else passes
    batch_size = int(settings.get("batch_size", 16))
    per_seed = None
    for ps in p.passes:
        if ps.name not in passes:
            if ps.prompts not in prompts:
                raise PromptError(f"{probe} needs the prompt file of {ps.prompts}, which was not given")
            passes[ps.name] = ps.run(lens, prompts[ps.prompts], batch_size=batch_size, pad_id=pad_id)
        got = passes[ps.name]
        per_seed = [dict(d) for d in got] if per_seed is None else [{**a, **b} for a, b in zip(per_seed, got)]
    inputs = [{k: d[k] for k in p.prompt_axes} for d in per_seed]
    return summarise(p.metric, inputs, p.prompt_axes, scalars=p.scalars, per_layer=p.per_layer,
                     per_head=p.per_head, n_boot=int(settings.get("bootstrap", 1000)), rng_seed=BOOTSTRAP_SEED,
                     fixed=p.fixed(p.with_defaults(settings.get(probe))), per_prompt=p.per_prompt,
                     batched=p.batched)


# --------------------------------------------------------------------- the checkpoint
def _step_from_revision(revision: str | None) -> int | None:
    m = re.search(r"(?:^|-)step(\d+)", revision or "")
    return int(m.group(1)) if m else None


def load_prompt_files(prompts) -> dict[str, dict]:
    """Prompt files by probe name from a folder of ``{probe}.json``, a list of files, or such a mapping."""
    if isinstance(prompts, dict) and all(isinstance(v, dict) for v in prompts.values()):
        return prompts
    if isinstance(prompts, (str, Path)) and Path(prompts).is_dir():
        paths = sorted(Path(prompts).glob("*.json"))
    elif isinstance(prompts, dict):
        paths = list(prompts.values())
    elif isinstance(prompts, (str, Path)):
        paths = [prompts]
    else:
        paths = list(prompts)
    files = {}
    for path in paths:
        file = load_prompts(path)
        files[file["probe"]] = file
    return files


def _check_prompts(prompts: dict[str, dict], settings: dict, tok, lm) -> None:
    for name, file in prompts.items():
        if prompt_settings(settings, name) != file["settings"]:
            raise PromptError(f"the {name} prompt file was made with other probe settings than the ones given; "
                              "remake it (icl-probe prompts) after changing the config")
        check = get(name, external_of(settings)).check_tokenizer
        if tok is not None and check is not None and (problem := check(file, tok, file["settings"][name])):
            raise PromptError(f"{name}: {problem}")
    ctx = context_length(lm.config)
    if ctx is not None:
        check_context(prompts, ctx)
    rows = lm.get_input_embeddings().num_embeddings
    top = max((t for file in prompts.values() for seqs in sequences_of(file) for seq in seqs for t in seq),
              default=-1)
    if top >= rows:
        raise PromptError(f"the prompt file uses token id {top} but the model has {rows} embedding rows")


def pad_id_of(tok, prompts: dict[str, dict]) -> int:
    """The padding id of the passes: the tokenizer's, else the one the prompt files recorded (eos)."""
    if tok is not None and tok.pad_token_id is not None:
        return tok.pad_token_id
    return next(iter(prompts.values()))["tokenizer"]["pad_id"]


@functools.cache
def code_sha256() -> str:
    """sha256 over the package's Python sources: a result made by other code is not kept as current."""
    h = hashlib.sha256()
    root = Path(icl_probe.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _result_settings(settings: dict, probe: str) -> dict:
    return {"seeds": list(settings["seeds"]), "batch_size": int(settings.get("batch_size", 16)),
            "bootstrap": int(settings.get("bootstrap", 1000)), **dict(settings.get(probe, {}))}


def _identity(record: dict) -> dict:
    """What makes a result current: everything but timing, numbers, and what only the load reveals."""
    keep = ("schema_version", "model", "suite", "repo_id", "revision", "step", "tokens", "probe", "settings")
    prov = {k: v for k, v in record.get("provenance", {}).items() if k != "model_class"}
    return {**{k: record.get(k) for k in keep}, "provenance": prov}


def _is_current(path: Path, expected: dict) -> bool:
    try:
        old = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and "scalars" in old and _identity(old) == _identity(expected)


def probe_checkpoint(
    repo_id: str,
    revision: str | None,
    out_dir,
    settings: dict,
    prompts_path,
    *,
    cache_dir=None,
    local_files_only: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    provenance: dict | None = None,
    step: int | None = None,
    tokens: int | None = None,
    suite: str | None = None,
    model: str | None = None,
    loaded: tuple | None = None,
    keep_current: bool = False,
    load_revision: str | None = None,
) -> dict[str, Path]:
    """Run every enabled probe on one checkpoint from a single model load.

    ``settings`` is the config's ``probes`` section (or the whole config, whose
    ``probes`` section is then used); ``prompts_path`` the model's
    prompt file (:func:`make_prompts`). ``provenance`` (commit, weight sha256, ...)
    is merged into the recorded provenance; ``model`` is the short model name used
    in paths (default: the last part of ``repo_id``); ``step`` defaults to the one
    in the revision name. ``loaded=(model, tokenizer)`` skips loading (tests,
    benchmarks). ``load_revision`` (the manifest's commit, in the workflow) is what is loaded,
    ``revision`` what the results are named by; default: ``revision``.
    Writes ``out_dir/{probe}.json`` atomically and returns their paths.

    ``prompts_path``: the folder of prompt files, a list of them, or ``{probe: file}``.
    With ``keep_current``, a probe whose result file exists and was made with the same
    settings, prompts, code, versions and checkpoint is not rerun (its file is left
    untouched); the model is loaded only if some probe has to run.
    """
    t0 = time.perf_counter()
    settings = probe_settings_of(settings)
    enabled = list(settings.get("enabled", _probes_of(settings)))
    probes = [get(name, external_of(settings)) for name in enabled]  # unknown names fail here
    prompts = load_prompt_files(prompts_path)
    for p in probes:
        if p.prompt_source not in prompts:
            raise PromptError(f"{p.name} needs the prompt file of {p.prompt_source}; none was given "
                              f"(given: {', '.join(prompts) or 'none'})")
    base_prov = {
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "icl_probe": icl_probe.__version__,
        "code_sha256": code_sha256(),
        "device": str(device),
        "dtype": str(dtype),
        **(provenance or {}),
    }
    header = {
        "schema_version": icl_probe.SCHEMA_VERSION,
        "model": model or repo_id.rstrip("/").rsplit("/", 1)[-1],
        "suite": suite,
        "repo_id": repo_id,
        "revision": revision,
        "step": step if step is not None else _step_from_revision(revision),
        "tokens": tokens,
    }

    def record_head(name: str) -> dict:
        probe = get(name, external_of(settings))
        prov = {**base_prov, "prompts_sha256": prompts[probe.prompt_source]["prompts_sha256"]}
        if source_sha256(probe):
            prov["probe_sha256"] = source_sha256(probe)  # a third-party probe's own code
        return {**header, "probe": name, "settings": _result_settings(settings, name), "provenance": prov}

    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    todo = []
    for name in enabled:
        path = out_dir / f"{name}.json"
        if keep_current and _is_current(path, record_head(name)):
            log.info("%s: kept (a current result exists: same settings, prompts, code and checkpoint)", name)
            written[name] = path
        else:
            todo.append(name)
    if not todo:
        return written
    if loaded is None:
        lm, tok = load_checkpoint(repo_id, load_revision or revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, device=device, dtype=dtype)
    else:
        lm, tok = loaded
        lm.eval()
    load_seconds = time.perf_counter() - t0
    log.info("%s@%s: loaded in %.1f s; %d probe(s) to run: %s", repo_id, revision, load_seconds, len(todo),
             ", ".join(todo))
    _check_prompts(prompts, settings, tok, lm)
    pad_id = pad_id_of(tok, prompts)
    lens = Lens(lm)
    passes: dict = {}
    t_probes = time.perf_counter()
    for i, name in enumerate(todo, 1):
        t1 = time.perf_counter()
        result = run_probe(lens, name, prompts, settings, pad_id=pad_id, passes=passes)
        head = record_head(name)
        head["provenance"]["model_class"] = type(lm).__name__
        record = {**head, **result, "timing": {"seconds": time.perf_counter() - t1, "load_seconds": load_seconds}}
        written[name] = write_json(out_dir / f"{name}.json", record)
        log.info("%s: computed in %.2f s; %d of %d probes done %s", name, record["timing"]["seconds"], i, len(todo),
                 progress(i, len(todo), time.perf_counter() - t_probes, "probes"))
    return written


__all__ = ["probe_checkpoint", "make_prompts", "load_checkpoint", "load_tokenizer", "run_probe",
           "load_prompt_files", "build_prompts"]
