"""The ``icl-probe`` command: one subcommand per workflow step.

Each subcommand parses paths and settings and hands them to one package
function; the Snakemake rules call these, and so can a user, without Snakemake:

    icl-probe probe --model EleutherAI/pythia-70m --revision step1000 --out DIR
    icl-probe aggregate --table per_checkpoint.csv --out DIR
    icl-probe summary results
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from icl_probe.config import ConfigError, load_config, validate_config
from icl_probe.io import read_json

log = logging.getLogger("icl_probe")


def _settings(args) -> dict:
    """Probe/runtime/stats settings: --settings-file FILE ... (the workflow writes one per probe;
    several are merged, :func:`merge_settings`), else --settings JSON, else --config FILE, else defaults."""
    files = getattr(args, "settings_file", None)
    if files:
        files = [files] if isinstance(files, str) else list(files)
        return merge_settings([read_json(f) for f in files], [str(f) for f in files])
    if getattr(args, "settings", None):
        return json.loads(args.settings)
    if getattr(args, "config", None):
        return load_config(args.config)
    return validate_config({"suites": {"none": {"source": "hub", "models": {"none": {"repo_id": "a/b"}}}}})




def merge_settings(parts: list[dict], names: list[str] | None = None) -> dict:
    """One settings dict from several per-probe settings files (``results/settings/probes/{probe}.json``).

    ``probes.enabled`` and ``probes.external`` are the unions in the given order (a built-in
    probe's file names no third-party module), the probe sections are merged, and the shared
    keys (``probes.seeds``, ``batch_size``, ``bootstrap`` and ``runtime``) must agree: else a
    ConfigError naming the key and the files.
    """
    names = names or [f"settings #{i + 1}" for i in range(len(parts))]
    if len(parts) == 1:
        return parts[0]
    merged: dict = {}
    probes: dict = {}
    unions: dict[str, list] = {}  # probes.enabled, probes.external
    where: dict = {}  # key -> the file it was first taken from

    def agree(key: str, value, name: str, into: dict, field: str):
        if field in into and into[field] != value:
            raise ConfigError(f"the settings files disagree on {key}: {where[key]} has {json.dumps(into[field])}, "
                              f"{name} has {json.dumps(value)}; rewrite them from one config (snakemake reruns "
                              "the settings rule)")
        into.setdefault(field, value)
        where.setdefault(key, name)

    for part, name in zip(parts, names):
        if not isinstance(part, dict):
            raise ConfigError(f"{name} is not a settings file (no JSON object)")
        for key, value in part.items():
            if key != "probes":
                agree(key, value, name, merged, key)
        inner = part.get("probes") or {}
        for key, value in inner.items():
            if key in ("enabled", "external"):
                have = unions.setdefault(key, [])
                have += [p for p in value if p not in have]
            else:
                agree(f"probes.{key}", value, name, probes, key)
    merged["probes"] = {**probes, **unions}
    return merged


def _stats_settings(args) -> dict:
    """Stats settings: --stats-settings-file FILE, else --stats-settings JSON, else --config FILE's stats."""
    if getattr(args, "stats_settings_file", None):
        return read_json(args.stats_settings_file)
    if getattr(args, "stats_settings", None):
        return json.loads(args.stats_settings)
    return _settings(args)["stats"]


def _use_threads(threads: int | None) -> None:
    """Tell torch how many CPU threads this job has (the rule's ``threads``); None: torch's default."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {threads}")
    import torch

    torch.set_num_threads(threads)


def cmd_build_minisuite(args) -> None:
    from icl_probe.minisuite.build import build_model
    from icl_probe.progress import every

    build_model(args.model, args.cache_dir, seed=args.seed, threads=args.threads,
                log=every(args.console_every, _console(args.progress_fd)))


def _console(fd: int | None):
    """A line-buffered stream on file descriptor ``fd`` (the workflow passes the console as 3),
    or None when it is not given or not open."""
    if fd is None:
        return None
    try:
        return open(fd, "w", buffering=1, closefd=False)
    except OSError:
        return None


def cmd_resolve(args) -> None:
    from icl_probe.hub.resolve import resolve_model

    rec = json.loads(args.record)
    resolve_model(
        rec["suite"], rec["model"], rec["repo_id"], rec["source"], rec.get("revisions", "all"),
        args.out, cache_dir=args.cache_dir or None, branch_list=rec.get("branch_list"),
        stage=rec.get("stage", 1), ingredient=rec.get("ingredient"),
    )


def cmd_fetch(args) -> None:
    from icl_probe.hub.fetch import fetch_checkpoint
    from icl_probe.io import write_json

    manifest = read_json(args.manifest)
    entry = _manifest_entry(manifest, args.revision)
    if entry.get("duplicate_of"):  # its weights are another revision's: never downloaded
        write_json(Path(args.dest) / "fetched.json", {"revision": args.revision, "duplicate_of": entry["duplicate_of"]})
        return
    fetch_checkpoint(manifest, args.revision, args.dest, stall_s=args.stall_s)


def _manifest_entry(manifest: dict, revision: str) -> dict:
    for entry in manifest["revisions"]:
        if revision in (entry["revision"], entry.get("recorded_as")):
            return entry
    names = [e["revision"] for e in manifest["revisions"]]
    raise ConfigError(f"revision {revision!r} is not in the manifest of {manifest['repo_id']}; it has: {', '.join(names)}")


def _first_probed(manifest: dict) -> str:
    return next(e["revision"] for e in manifest["revisions"] if not e.get("duplicate_of"))


def cmd_prompts(args) -> None:
    from icl_probe.runner import make_prompts

    manifest = read_json(args.manifest)
    settings = _settings(args)
    make_prompts(
        manifest["repo_id"], _first_probed(manifest), args.out, settings,
        cache_dir=manifest.get("cache_dir") or args.cache_dir,
        local_files_only=manifest.get("source") != "hub", probe=args.probe,
    )


def _prompt_paths(given: list[str]):
    """--prompts: one folder of ``{probe}.json``, or prompt files."""
    if len(given) == 1 and Path(given[0]).is_dir():
        return Path(given[0])
    return [Path(p) for p in given]


def cmd_probe(args) -> None:
    from icl_probe.runner import make_prompts, probe_checkpoint

    settings = _settings(args)
    _use_threads(args.threads)
    meta: dict = {"repo_id": args.model, "step": None, "tokens": None, "suite": None, "model": None}
    provenance: dict = {}
    local_only = args.local_files_only
    if args.manifest:
        manifest = read_json(args.manifest)
        entry = _manifest_entry(manifest, args.revision)
        meta = {"repo_id": manifest["repo_id"], "step": entry.get("step"), "tokens": entry.get("tokens"),
                "suite": manifest.get("suite"), "model": manifest.get("model")}
        provenance = {"commit": entry.get("commit"),
                      "weight_sha256": {f["path"]: f.get("sha256") for f in entry.get("files", [])}}
        local_only = True  # the workflow fetched (or built) the files: loaded by commit, no Hub request
        if entry.get("duplicate_of"):
            _write_duplicate_stubs(Path(args.out), manifest, entry, settings)
            return
    if not meta["repo_id"]:
        raise ConfigError("probe needs --model REPO_ID (or --manifest FILE from the workflow)")
    out = Path(args.out)
    if args.prompts:
        prompts = _prompt_paths(args.prompts)
    else:
        prompts = out / "prompts"
        make_prompts(meta["repo_id"], args.revision, prompts, settings,
                     cache_dir=args.cache_dir, local_files_only=local_only)
    probe_checkpoint(
        meta["repo_id"], args.revision, out, settings, prompts,
        cache_dir=args.cache_dir, local_files_only=local_only,
        device=settings["runtime"]["device"], dtype=settings["runtime"]["dtype"],
        provenance=provenance, step=meta["step"], tokens=meta["tokens"],
        suite=meta["suite"], model=meta["model"], keep_current=args.keep_current,
        load_revision=provenance.get("commit"),
    )


def _write_duplicate_stubs(out: Path, manifest: dict, entry: dict, settings: dict) -> None:
    """A duplicate revision's results: no numbers, only which revision holds its weights."""
    from icl_probe import SCHEMA_VERSION
    from icl_probe.io import write_json
    from icl_probe.runner import probe_settings_of

    for probe in probe_settings_of(settings)["enabled"]:
        write_json(out / f"{probe}.json", {
            "schema_version": SCHEMA_VERSION, "probe": probe, "suite": manifest.get("suite"),
            "model": manifest.get("model"), "repo_id": manifest["repo_id"], "revision": entry["revision"],
            "step": entry.get("step"), "tokens": entry.get("tokens"), "duplicate_of": entry["duplicate_of"],
            "note": "not probed: this revision serves the same weights as duplicate_of"})


def cmd_aggregate(args) -> None:
    from icl_probe import aggregate

    stats = _stats_settings(args)
    if args.table:
        if not args.out:
            raise ConfigError("aggregate --table needs --out DIR")
        aggregate.aggregate_table(args.table, args.out, stats)
    elif args.model_dir and args.manifest:
        refinement = read_json(args.refinement) if args.refinement else None
        revisions = refinement["analysed"] if refinement else args.revisions
        aggregate.aggregate_model(args.model_dir, args.manifest, stats, results=args.results,
                                  revisions=revisions, refinement=refinement)
    else:
        raise ConfigError("aggregate needs either --table FILE.csv --out DIR, or --model-dir DIR --manifest FILE")


def cmd_refine(args) -> None:
    from icl_probe import aggregate, refine
    from icl_probe.io import write_json
    from icl_probe.stats.model import settings

    manifest = read_json(args.manifest)
    previous = read_json(args.previous) if args.previous else None
    analysed = previous["analysed"] if previous else args.coarse
    stats = aggregate.analyse_model(args.model_dir, manifest, settings(_stats_settings(args)),
                                    args.results, analysed)[3]
    rec = refine.refine_round(manifest, stats, round_no=args.round, coarse=args.coarse, previous=previous,
                              settings=json.loads(args.settings))
    write_json(args.out, rec)
    states = ", ".join(f"{t} {v['status']} {v['bracket']}" for t, v in rec["transitions"].items())
    print(f"refinement round {args.round} of {manifest['suite']}/{manifest['model']}: "
          f"{len(rec['added'])} added ({', '.join(rec['added']) or 'none'}); {states}; "
          f"{rec['n_checkpoints']} of {rec['n_dense']} branches analysed" + ("; done" if rec["done"] else ""))


def cmd_figures(args) -> None:
    from icl_probe import aggregate

    aggregate.make_figures(args.model_dirs, args.out, _stats_settings(args))


def cmd_summary(args) -> None:
    from icl_probe.summary import format_summary, summarise_results

    print(format_summary(summarise_results(args.results_dir), args.results_dir))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icl-probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("build-minisuite", help="train one model of the embedded mini-suite")
    s.add_argument("--model", required=True)
    s.add_argument("--cache-dir", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the training (default 1); the files are byte-identical for the same "
                        "model, seed and threads")
    s.add_argument("--progress-fd", type=int, default=None,
                   help="also write a progress line to this open file descriptor (the workflow: 3, its console) "
                        "at most every --console-every seconds, and the last one")
    s.add_argument("--console-every", type=float, default=30.0)
    s.set_defaults(func=cmd_build_minisuite)

    s = sub.add_parser("resolve", help="write a model's manifest of revisions")
    s.add_argument("--record", required=True, help="the model's config record (JSON)")
    s.add_argument("--cache-dir", default="")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_resolve)

    s = sub.add_parser("fetch", help="download one checkpoint listed in a manifest")
    s.add_argument("--manifest", required=True)
    s.add_argument("--revision", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--stall-s", type=float, default=None,
                   help="abort and resume a transfer that receives no byte for this many seconds (default: "
                        "huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT, 10 s unless set in the environment)")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("prompts", help="write a model's prompt files (once per model and probe)")
    s.add_argument("--manifest", required=True)
    s.add_argument("--probe", help="write this probe's prompt file at --out (the workflow's way); without it, "
                                   "--out is a folder and every enabled probe's file is written there")
    s.add_argument("--settings-file", nargs="+", help="probe and runtime settings as JSON file(s) (the "
                                                      "workflow's results/settings/probes/{probe}.json)")
    s.add_argument("--settings", help="probe and runtime settings as JSON")
    s.add_argument("--config", help="a config.yaml to take settings from")
    s.add_argument("--cache-dir")
    s.add_argument("--out", required=True, help="the prompt file (with --probe), else a folder")
    s.set_defaults(func=cmd_prompts)

    s = sub.add_parser("probe", help="run every enabled probe on one checkpoint, from one model load")
    s.add_argument("--model", help="repo id, e.g. EleutherAI/pythia-70m (not needed with --manifest)")
    s.add_argument("--revision", required=True, help="branch, e.g. step1000")
    s.add_argument("--out", required=True, help="folder for one JSON per probe")
    s.add_argument("--manifest", help="the workflow's manifest.json (gives repo, step, tokens, provenance)")
    s.add_argument("--prompts", nargs="+", help="prompt files, or one folder of {probe}.json; made from the "
                                                "model's tokenizer into OUT/prompts/ if absent")
    s.add_argument("--cache-dir", help="Hugging Face cache folder the checkpoint is in or goes to")
    s.add_argument("--local-files-only", action="store_true", help="never touch the network")
    s.add_argument("--settings-file", nargs="+",
                   help="probe and runtime settings as JSON file(s); the workflow passes one per enabled probe "
                        "(results/settings/probes/{probe}.json), merged: enabled probes in the given order, "
                        "shared settings must agree")
    s.add_argument("--settings", help="probe and runtime settings as JSON")
    s.add_argument("--config", help="a config.yaml to take probe and runtime settings from")
    s.add_argument("--threads", type=int, help="CPU threads torch may use (default: torch's own choice)")
    s.add_argument("--keep-current", action="store_true",
                   help="leave a probe's result file untouched when it is current (same settings, prompts, "
                        "code, versions and checkpoint); the model is loaded only if some probe has to run")
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("aggregate", help="per-model table, statistics and QC")
    s.add_argument("--model-dir")
    s.add_argument("--manifest")
    s.add_argument("--results", nargs="*", help="exactly the result files to read (the workflow passes its "
                                                "inputs); default: MODEL_DIR/{revision}/{probe}.json of the "
                                                "stats settings' probes")
    s.add_argument("--revisions", nargs="*", help="the manifest's revisions the model analyses (default all)")
    s.add_argument("--refinement", help="the last refinement round's record (refine/round{N}.json): its "
                                        "analysed revisions, kept in stats.json")
    s.add_argument("--table", help="a CSV with one row per (model, step), produced elsewhere")
    s.add_argument("--out")
    s.add_argument("--stats-settings-file", help="stats settings as a JSON file (the workflow's "
                                                 "results/settings/stats.json)")
    s.add_argument("--stats-settings", help="stats settings as JSON")
    s.add_argument("--config", help="a config.yaml to take stats settings from")
    s.set_defaults(func=cmd_aggregate)

    s = sub.add_parser("refine", help="one adaptive-refinement round: which branches to probe next "
                                      "(docs/refinement.md)")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--coarse", nargs="+", required=True, help="the coarse selection's revisions")
    s.add_argument("--previous", help="the previous round's record (not for round 1)")
    s.add_argument("--results", nargs="*", help="the result files of the revisions analysed so far")
    s.add_argument("--settings", required=True, help="the model's refine section as JSON")
    s.add_argument("--stats-settings-file", help="stats settings as a JSON file")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_refine)

    s = sub.add_parser("figures", help="draw the figures across models")
    s.add_argument("--model-dirs", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--stats-settings-file", help="stats settings as a JSON file (the workflow's "
                                                 "results/settings/stats.json)")
    s.add_argument("--stats-settings", help="stats settings as JSON")
    s.add_argument("--config", help="a config.yaml to take stats settings from")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser("summary", help="print a short per-model summary of a results folder and where the "
                                       "outputs are (the workflow prints it at the end of a run)")
    s.add_argument("results_dir", metavar="RESULTS_DIR", help="the workflow's results folder, e.g. results")
    s.set_defaults(func=cmd_summary)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    # SIGTERM unwinds like Ctrl-C, so a stopped job removes its temporary files (main thread only)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        args.func(args)
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        why = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"icl-probe {args.command}: {why}; results already written are kept (each is written "
              "whole or not at all), run the same command again to go on", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # noqa: BLE001 - the edge: a clear message, not a traceback
        message = None if args.debug else user_message(e)
        if message is None:
            raise
        print(f"icl-probe {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def entry() -> None:
    """The ``icl-probe`` command: :func:`main`, then the exit callbacks (logging's flush among them)
    and an immediate exit. On a local run a warm worker (:mod:`icl_probe.warm`) runs main when one
    is up, which saves the import of torch and transformers. The interpreter's own teardown of
    torch and transformers (every module and object freed one by one) took 1.5 s of a 10 s probe
    job; the results are written and closed by then. An exception that main does not turn into a
    message exits the usual way (traceback)."""
    from icl_probe import warm

    rc = warm.run(sys.argv[1:]) if warm.enabled() else None  # a warm worker runs it, if one is up
    if rc is None:
        rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


class Terminated(KeyboardInterrupt):
    """SIGTERM (Snakemake stopping a job, Slurm's time limit), raised like Ctrl-C's KeyboardInterrupt."""


def _terminated(signum, frame):
    raise Terminated()


def _setup_logging() -> None:
    """One line per message, with time and source. huggingface_hub's own handler is removed (its
    messages, e.g. retry warnings, reach the root handler once instead of twice); progress bars are
    off unless the output is a terminal (in a log file they are noise): the jobs log their progress."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.get_logger().handlers.clear()
    # its backoff logs two lines per attempt ("... thrown while requesting ...", "Retrying in Ns"):
    # the first says it; the second is dropped
    logging.getLogger("huggingface_hub.utils._http").addFilter(
        lambda record: not str(record.msg).startswith("Retrying in "))
    if not sys.stderr.isatty():
        disable_progress_bars()
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()


def user_message(e: Exception) -> str | None:
    """The message for an expected failure (it names the cause and the fix), else None."""
    from icl_probe.hub.errors import network_cause, unreachable_message

    if _is_user_error(e):
        return str(e)
    cause = network_cause(e)
    if cause is not None:
        return unreachable_message(cause)
    return None


def _is_user_error(e: Exception) -> bool:
    """Errors whose message already says what went wrong and what to do."""
    from icl_probe.arch import UnsupportedArchitectureError
    from icl_probe.hub.errors import CheckpointSourceError
    from icl_probe.prompts import PromptError

    known = (ConfigError, FileNotFoundError, CheckpointSourceError, PromptError, UnsupportedArchitectureError)
    return isinstance(e, known) or getattr(e, "user_facing", False)


if __name__ == "__main__":
    entry()
