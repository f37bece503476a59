# Shared by every rule file -- config loading and validation, the constants the rules use
# (RESULTS, MODELS, PROBES, the planned REVISIONS, paths), wildcard constraints, input and
# params functions, stale-lock cleanup and the start-up device check, and the job-resource
# functions (probe_mem_mb, probe_runtime, fetch_disk_mb, fetch_runtime) that scale with
# each checkpoint's weight size.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.common.configfile import load_configfile
from snakemake.utils import validate

from icl_probe.config import (
    ConfigError,
    combine_configs,
    device_problem,
    validate_config,
    models,
    model_record,
)
from icl_probe.locks import clear_stale_locks, record_owner
from icl_probe.plan import planned_revisions
from icl_probe.probes.registry import BUILTIN
from icl_probe.prompts import prompt_sources
from icl_probe.refine import resolve_selection

try:
    if workflow.overwrite_configfiles or workflow.config_settings.config:
        # config.yaml, extended key by key by each --configfile (one naming suites replaces
        # them: a preset analyses its own suites), then --config amends, coerced to the schema.
        overlays = [load_configfile(f) for f in workflow.overwrite_configfiles]
        base_files = workflow.configfiles[len(overlays) :]
        replace = workflow.config_settings.replace_workflow_config
        base = (
            {}
            if replace
            else combine_configs({}, [load_configfile(f) for f in base_files])
        )
        cli = json.loads(json.dumps(dict(workflow.config_settings.config)))
        config.clear()
        config.update(combine_configs(base, overlays, cli))
    config.update(validate_config(config))
except ConfigError as e:
    raise WorkflowError(str(e)) from None
validate(config, "../icl_probe/config.schema.yaml")

RESULTS = config["results_dir"]
MINI_CACHE = config["minisuite"]["cache_dir"]
MODELS = models(config)
PROBES = config["probes"]["enabled"]
# third-party probe modules (module paths or .py files), read by every job through its settings
EXTERNAL = list(config["probes"].get("external", []))
try:
    # the probes whose prompt files the enabled probes read (a probe may borrow another's)
    PROMPT_SOURCES = prompt_sources(config["probes"])
except Exception as e:  # a third-party probe that does not load: say which and why
    if not getattr(e, "user_facing", False):
        raise
    raise WorkflowError(f"invalid configuration: {e}") from None


wildcard_constraints:
    suite="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    # never the model folder's prompts/ (the prompt files lie there, not a revision's results)
    revision="(?!prompts/)[A-Za-z0-9][A-Za-z0-9_.-]*",
    name="[A-Za-z0-9][A-Za-z0-9_.-]*",
    kind="probes/[A-Za-z_][A-Za-z0-9_]*|stats",
    probe="[A-Za-z_][A-Za-z0-9_]*",
    round="[1-9][0-9]*",


def record(w):
    """The config record of the model named by the wildcards."""
    return model_record(config, w.suite, w.model)


def record_json(w):
    return json.dumps(record(w), sort_keys=True)


def resolve_record_json(w):
    """The record the resolve step reads: with ``refine``, the selection is the coarse range's
    every branch (a round may add any) and the refine settings are left out (changing them
    reruns only the rounds)."""
    rec = record(w)
    if not rec.get("refine"):
        return record_json(w)
    selection = resolve_selection(rec, REVISIONS[(w.suite, w.model)])
    rec = {k: v for k, v in rec.items() if k != "refine"} | {"revisions": selection}
    return json.dumps(rec, sort_keys=True)


def minisuite_name(rec):
    """`mini/pythia-s` -> `pythia-s`, the mini-suite builder's model name."""
    return rec["repo_id"].split("/", 1)[1]


def model_cache_dir(rec):
    """The Hub cache that holds a local model's revisions (None for the Hub)."""
    if rec["source"] == "minisuite":
        return MINI_CACHE
    return rec.get("cache_dir")


def built_minisuite(w):
    """The mini-suite model folder a model's revisions come from (if any)."""
    rec = record(w)
    if rec["source"] != "minisuite":
        return []
    return f"{MINI_CACHE}/models--mini--{minisuite_name(rec)}"


def probe_settings(probe):
    """The settings of one probe's jobs: the shared probe settings, ``enabled: [probe]``, its
    section and that of the probe whose prompts it reads, and the runtime. One file per
    probe, so enabling another probe or changing one probe's section leaves the others' as they are.
    """
    section = config["probes"]
    shared = {
        k: section[k] for k in ("seeds", "batch_size", "bootstrap") if k in section
    }
    own = {
        name: section.get(name, {})
        for name in dict.fromkeys(
            [probe, *prompt_sources({**section, "enabled": [probe]})]
        )
    }
    # a built-in probe's file does not name the third-party modules: adding one leaves it as it is
    external = [] if set(own) <= set(BUILTIN) else EXTERNAL
    # how the workflow schedules jobs is not a setting of their results: changing it reruns nothing
    runtime = {k: v for k, v in config["runtime"].items() if k != "downloads_at_once"}
    return {
        "probes": {**shared, "external": external, "enabled": [probe], **own},
        "runtime": runtime,
    }


# The settings jobs read, by kind: probes/{probe} (that probe's prompts and the probe jobs),
# stats (aggregate, figures).
SETTINGS = {
    **{
        f"probes/{p}": probe_settings(p) for p in dict.fromkeys(PROBES + PROMPT_SOURCES)
    },
    "stats": {
        **config["stats"],
        "n_seeds": len(config["probes"]["seeds"]),
        "probes": PROBES,
        "external": EXTERNAL,
    },
}


def settings_json(w):
    """The settings of kind ``w.kind`` as sorted JSON: the settings rule's params."""
    if w.kind not in SETTINGS:
        raise WorkflowError(
            f"no settings file {w.kind}: not an enabled probe ({', '.join(PROBES)})"
        )
    return json.dumps(SETTINGS[w.kind], sort_keys=True)


def settings_file(kind):
    """The settings file of ``kind`` (``probes/{probe}`` or ``stats``) that the settings rule
    writes (an input of the jobs)."""
    return f"{RESULTS}/settings/{kind}.json"


# third-party probe files: a probe job's input, so an edited probe reruns the jobs (which
# recompute only that probe: its result records the file's checksum)
EXTERNAL_FILES = [p for p in EXTERNAL if p.endswith(".py")]


def prompt_files(w):
    """The model's prompt files the probe job reads: one per probe in PROMPT_SOURCES."""
    return [f"{RESULTS}/{w.suite}/{w.model}/prompts/{p}.json" for p in PROMPT_SOURCES]


try:
    REVISIONS = {
        (m["suite"], m["model"]): planned_revisions(m, results_dir=RESULTS)
        for m in MODELS
    }
except (ValueError, OSError) as e:
    raise WorkflowError(f"cannot list the revisions to analyse: {e}") from None


# --- adaptive refinement (rules/refine.smk): rounds are checkpoints that add revisions ---
REFINE = {(m["suite"], m["model"]): m["refine"] for m in MODELS if m.get("refine")}


def round_file(suite, model, n):
    return f"{RESULTS}/{suite}/{model}/refine/round{n}.json"


def read_round(suite, model, n):
    """Round ``n``'s record; until it exists, Snakemake schedules it (a checkpoint) first."""
    path = checkpoints.refine.get(suite=suite, model=model, round=str(n)).output[0]
    with open(path) as f:
        return json.load(f)


def last_round(suite, model):
    """The number of the round that added nothing (reading rounds 1, 2, ... on the way)."""
    n = 1
    while not read_round(suite, model, n)["done"]:
        n += 1
    return n


def analysed_revisions(suite, model, before_round=None):
    """The revisions a model analyses: the coarse selection, then each round's additions; with
    ``before_round``, those probed before that round."""
    if (suite, model) not in REFINE:
        return REVISIONS[(suite, model)]
    n = last_round(suite, model) + 1 if before_round is None else int(before_round)
    return (
        REVISIONS[(suite, model)]
        if n == 1
        else read_round(suite, model, n - 1)["analysed"]
    )


def results_of(suite, model, revisions):
    return [
        f"{RESULTS}/{suite}/{model}/{rev}/{probe}.json"
        for rev in revisions
        for probe in PROBES
    ]


def round_results(w):
    """What a refinement round reads: the results of the revisions probed before it."""
    return results_of(w.suite, w.model, analysed_revisions(w.suite, w.model, w.round))


def previous_round(w):
    n = int(w.round)
    return [] if n == 1 else round_file(w.suite, w.model, n - 1)


def final_round(w):
    """The last refinement round's file (the aggregate step keeps it in stats.json), or none."""
    if (w.suite, w.model) not in REFINE:
        return []
    return round_file(w.suite, w.model, last_round(w.suite, w.model))


def probe_results(w):
    """Every probe result of a model; a duplicate revision's are stubs that name the original."""
    return results_of(w.suite, w.model, analysed_revisions(w.suite, w.model))


FETCHED = "resources/fetch/{suite}/{model}/{revision}"


def checkpoint_files(w):
    """What a probe job needs on disk besides the manifest: fetched weights (Hub) or the built suite."""
    if record(w)["source"] == "hub":
        return FETCHED.format(**w)
    return built_minisuite(w)


def checkpoint_cache(w):
    """The Hugging Face cache a probe job loads from: the fetched checkpoint or the local cache."""
    rec = record(w)
    return FETCHED.format(**w) if rec["source"] == "hub" else model_cache_dir(rec)


def per_model_outputs():
    return [
        f"{RESULTS}/{m['suite']}/{m['model']}/{name}"
        for m in MODELS
        for name in ("table.csv", "stats.json", "qc.json")
    ]


# ours, then one figure of every scalar of the enabled probes that are not ours
FIGURES = ["emergence", "coemergence", "contraction", "lifecycle", "layer_readout"] + (
    ["probe_scalars"] if set(PROBES) - set(BUILTIN) else []
)


SUITES = list(dict.fromkeys(m["suite"] for m in MODELS))


def suite_model_files(suite, name):
    """``name`` in the folder of every model of ``suite`` (the folders themselves for "")."""
    return [
        f"{RESULTS}/{suite}/{m['model']}/{name}".rstrip("/")
        for m in MODELS
        if m["suite"] == suite
    ]


def figure_outputs():
    return [f"{RESULTS}/{s}/figures/{name}.png" for s in SUITES for name in FIGURES]


if workflow.is_main_process:
    # A run killed by SIGKILL leaves its lock behind: remove it if its process is gone.
    clear_stale_locks()


onstart:
    record_owner()
    # one console line per job start and end (not in dry runs: onstart runs only for real runs)
    from snakemake.logging import logger as snakemake_logger
    from icl_probe import console

    console.install(snakemake_logger)
    # jobs that run here must be able to use runtime.device (cluster jobs check on their node)
    if workflow.local_exec and config["runtime"]["device"] != "cpu":
        if problem := device_problem(config["runtime"]["device"]):
            raise WorkflowError(f"invalid configuration: {problem}")


# --- job resources that follow the checkpoint's size (Slurm: --mem, -t, --gpus) ---
ON_GPU = str(config["runtime"]["device"]).startswith("cuda")
# Downloads at once (fetch jobs hold fetch=1), unless --resources fetch=N was given. With the
# probe rule's higher priority, the next checkpoint downloads while this one is probed and
# fetched checkpoints never pile up on disk (benchmarks/sweep_overlap.py measures both).
if "fetch" not in workflow.global_resources:
    workflow.register_resource("fetch", config["runtime"]["downloads_at_once"])


def weights_mb(w, input):
    """MiB of one revision's weight files, from its manifest entry (1 before resolve ran)."""
    try:
        with open(input.manifest) as f:
            entries = json.load(f)["revisions"]
    except FileNotFoundError:
        return 1
    entry = next((e for e in entries if e["revision"] == w.revision), {"files": []})
    return max(1, sum(f["size"] for f in entry["files"]) // 2**20)


def probe_mem_mb(w, input, attempt):
    """~2 GiB for Python/torch + the model at runtime.dtype (float32: twice a 16-bit
    file) + a transient copy while loading; doubled on each retry."""
    per_file_mb = 3 if config["runtime"]["dtype"] == "float32" else 2
    return (2048 + per_file_mb * weights_mb(w, input)) * attempt


def probe_runtime(w, input, attempt):
    """Minutes: 15 + 10 per GiB of weights on CPU, 2 per GiB on a GPU; doubled on each retry."""
    per_gib = 2 if ON_GPU else 10
    return int(15 + per_gib * weights_mb(w, input) / 1024) * attempt


def build_priority(w):
    """Mini-suite builds before any probe job (priority 1), the longest first (training steps
    x layers, its compute): on 2 cores the longest build then overlaps the other two."""
    from icl_probe.minisuite.build import MODELS

    m = MODELS.get(w.name)
    return 2 + (m.final_step * m.n_layer if m else 0)


def fetch_disk_mb(w, input):
    return int(1.1 * weights_mb(w, input)) + 512


def fetch_runtime(w, input, attempt):
    """Minutes: 10 + 2 per GiB (about 10 MB/s); doubled on each retry."""
    return int(10 + 2 * weights_mb(w, input) / 1024) * attempt
