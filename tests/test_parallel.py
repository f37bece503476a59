"""Parallel jobs (``--cores 2`` and more, or a cluster) never corrupt the files they share.

Shared files are: result files that a rerun rewrites while a reader (an aggregate
job, a user) reads them; the tokenizer cache that every model's prompt job
downloads into; the prompt file each probe job of a model reads. Every writer goes
through a temporary file in the same folder and an atomic rename, and the Hub
cache is guarded by huggingface_hub's per-file locks.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_fixtures import build_minisuite_repo
from icl_probe.hub.testing import serve_hub
from icl_probe.io import read_json, write_json

WRITERS = 4
WRITES_EACH = 40


def _writer(path: str, k: int) -> None:
    # ~1 MB of JSON per write: large enough that a non-atomic write is seen half-done
    payload = {"writer": k, "values": [k + i / 7 for i in range(60_000)]}
    for _ in range(WRITES_EACH):
        write_json(path, payload)


def _reader(path: str, stop, bad) -> None:
    while not stop.is_set():
        try:
            doc = read_json(path)
        except FileNotFoundError:
            continue
        except ValueError:
            bad.value += 1
            continue
        if len(doc["values"]) != 60_000:
            bad.value += 1


def test_concurrent_writers_of_one_result_never_show_a_reader_half_a_file(tmp_path):
    ctx = mp.get_context("fork")
    path = str(tmp_path / "results" / "gd_readout.json")
    stop, bad = ctx.Event(), ctx.Value("i", 0)
    reader = ctx.Process(target=_reader, args=(path, stop, bad))
    reader.start()
    writers = [ctx.Process(target=_writer, args=(path, k)) for k in range(WRITERS)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    stop.set()
    reader.join(30)
    assert all(w.exitcode == 0 for w in writers)
    assert bad.value == 0, f"the reader saw {bad.value} partial files"
    final = read_json(path)
    assert final["writer"] in range(WRITERS) and len(final["values"]) == 60_000
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["gd_readout.json"]  # no temporaries left


@pytest.fixture(scope="module")
def hub_with_digit_tokenizer(tmp_path_factory):
    """A one-revision Hub repo with the mini-suite tokenizer (digits are single tokens)."""
    root = tmp_path_factory.mktemp("hub-par") / "hub"
    repo, _ = build_minisuite_repo(root)
    return root, repo


PROMPT_JOB = """
import json, sys
from icl_probe.runner import make_prompts
make_prompts("mini/pythia-s", "main", sys.argv[1], json.loads(sys.argv[2]), cache_dir=sys.argv[3],
             probe="gd_readout")
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_concurrent_prompt_jobs_share_one_tokenizer_cache(hub_with_digit_tokenizer, small_settings, tmp_path):
    root, repo = hub_with_digit_tokenizer
    cache = tmp_path / "tokenizers"
    outs = [tmp_path / f"model{k}" / "gd_readout.json" for k in range(3)] + [tmp_path / "shared" / "gd_readout.json"] * 2
    with serve_hub(root) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HOME": str(tmp_path / "hf-home")}
        env.pop("HF_HUB_OFFLINE", None)
        jobs = [subprocess.Popen([sys.executable, "-c", PROMPT_JOB, str(out), json.dumps(small_settings), str(cache)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outs]
        results = [(job.wait(300), job.stderr.read()) for job in jobs]
        tokenizer_gets = [r for r in hub.requests if r[0] == "GET" and r[1].endswith("/tokenizer.json")]
    for rc, err in results:
        assert rc == 0, err[-3000:]
    texts = {out.read_text() for out in outs}
    assert len(texts) == 1  # every job made the same prompts, and the shared file is whole
    assert json.loads(texts.pop())["prompts_sha256"]
    # the shared cache holds whole files identical to the Hub's, and nothing half-written
    cached = cache / "models--mini--pythia-s"
    for name in ("tokenizer.json", "config.json"):
        served = next((repo / "snapshots").glob(f"*/{name}"))
        assert _sha256(next(cached.glob(f"snapshots/*/{name}"))) == _sha256(served)
    leftovers = [p.name for p in cache.rglob("*") if p.is_file() and (".incomplete" in p.name or p.suffix == ".tmp")]
    assert leftovers == []
    assert 1 <= len(tokenizer_gets) <= len(outs)
    assert not list(outs[-1].parent.glob(".*.tmp"))


@pytest.mark.slow
def test_parallel_workflow_run_left_every_shared_file_whole(default_workflow):
    """The default run (``--cores 2``: two builds, then two probe jobs at a time, sharing the suite
    cache and each model's prompt file) leaves no temporary file and no JSON that does not parse."""
    temporaries = [p for folder in ("results", "resources") for p in (default_workflow / folder).rglob("*")
                   if p.is_file() and (p.name.endswith(".tmp") or ".building-" in str(p) or ".incomplete" in p.name)]
    assert temporaries == []
    results = list((default_workflow / "results").rglob("*.json"))
    assert len(results) > 100
    for p in results:
        json.loads(p.read_text())
    prompts = list((default_workflow / "results").rglob("prompts/*.json"))
    assert len(prompts) == 3 * 4  # one file per model and probe
    for p in prompts:
        digest = read_json(p)["prompts_sha256"]
        model_dir = p.parent.parent
        recorded = {read_json(r)["provenance"]["prompts_sha256"] for r in model_dir.glob(f"*/{p.stem}.json")
                    if "provenance" in read_json(r)}
        assert recorded == {digest}, p
