"""Fetching checkpoints through the local Hub stand-in: faults, hashes, disk, loading, and deleting
the fetch folder afterwards as the workflow does (the fetch rule's output is ``temp()``)."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from hub_fixtures import build_hub_cache, build_minisuite_repo, checkpoint_bytes
from icl_probe.hub import fetch as fetch_mod
from icl_probe.hub.errors import (
    DuplicateCheckpointError,
    FetchFailedError,
    GatedRepoError,
    HashMismatchError,
    InsufficientDiskError,
    RevisionNotFoundError,
)
from icl_probe.hub.fetch import dir_size, fetch_checkpoint
from icl_probe.hub.resolve import resolve_model
from icl_probe.hub.testing import serve_hub
from icl_probe.io import write_json
from icl_probe.stats.table import probed_revisions

REPO = "EleutherAI/pythia-tiny"
GATED = "acme/gated-tiny"
REVS = {"step0": 0, "step1": "=step0", "step2": 2, "step4": 4, "step8": "=step512", "step16": 16,
        "step512": 512, "step1000": 1000}


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubcache") / "hub"
    commits = build_hub_cache(root, REPO, REVS, main="step1000")
    build_hub_cache(root, GATED, {"step0": 0, "step1000": 1000})
    return root, commits


@pytest.fixture()
def hub(hub_root):
    with serve_hub(hub_root[0], gated={GATED}, tokens={"hf_ok"}) as h:
        yield h


@pytest.fixture()
def manifest(hub):
    return resolve_model("pythia", "pythia-tiny", REPO, "hub", "all", None, endpoint=hub.endpoint)


def _leftovers(dest: Path) -> list[str]:
    """Files under ``dest`` other than complete, named blobs: partial downloads, temporaries."""
    return [p.name for p in dest.rglob("*") if p.is_file() and (".incomplete" in p.name or p.name.endswith(".tmp"))]


def _blobs(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("blobs/*") if p.is_file()]


def _assert_loads_same_weights(record, hub_root, revision):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(REPO, revision=revision, cache_dir=record["cache_dir"],
                                                 local_files_only=True)
    ref = AutoModelForCausalLM.from_pretrained(REPO, revision=revision, cache_dir=hub_root[0], local_files_only=True)
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k


def test_fetch_then_from_pretrained_loads_the_checkpoint(hub, hub_root, manifest, tmp_path):
    rec = fetch_checkpoint(manifest, "step2", tmp_path / "step2")
    assert rec["commit"] == hub_root[1]["step2"]
    assert (tmp_path / "step2" / "fetched.json").is_file()
    assert rec["cache_dir"] == str(tmp_path / "step2")
    fetched = {p.name for p in (Path(rec["cache_dir"])).rglob("snapshots/*/*")}
    assert fetched == {"config.json", "generation_config.json", "model.safetensors",  # nothing else
                       "tokenizer.json", "tokenizer_config.json"}
    _assert_loads_same_weights(rec, hub_root, "step2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(REPO, revision="step2", cache_dir=rec["cache_dir"], local_files_only=True)
    assert tok.eos_token == "<|endoftext|>"


def test_fetch_without_tokenizer_gets_config_and_weights_only(hub, manifest, tmp_path):
    rec = fetch_checkpoint(manifest, "step2", tmp_path / "step2", with_tokenizer=False)
    fetched = {p.name for p in (Path(rec["cache_dir"])).rglob("snapshots/*/*")}
    assert fetched == {"config.json", "generation_config.json", "model.safetensors"}
    assert rec["tokenizer"] is None


def test_fetch_is_resumable_per_file(hub, manifest, tmp_path):
    dest = tmp_path / "step4"
    fetch_checkpoint(manifest, "step4", dest)
    n_get = hub.count("GET", "/resolve/")
    fetch_checkpoint(manifest, "step4", dest)  # everything there and verified: no download
    assert hub.count("GET", "/resolve/") == n_get
    weights = next(p for p in dest.rglob("snapshots/*/model.safetensors"))
    os.unlink(os.path.realpath(weights))  # an interrupted run lost the weights
    fetch_checkpoint(manifest, "step4", dest)
    assert hub.count("GET", "/resolve/") == n_get + 1  # only the missing file again


@pytest.mark.parametrize("fault,times", [("5xx", 2), ("5xx_get", 3), ("drop", 1), ("truncate", 2)])
def test_transient_faults_end_in_a_successful_retry(hub, hub_root, manifest, tmp_path, fault, times, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # so a dropped body resumes mid-file
    hub.inject(fault, "model.safetensors", times=times)
    rec = fetch_checkpoint(manifest, "step16", tmp_path / "step16", backoff_s=0.01)
    assert all(f.times == 0 for f in hub.faults)  # the faults did happen
    if fault == "drop":
        assert any(p.endswith("model.safetensors") and r.startswith("bytes=") and r != "bytes=0-"
                   for p, r in hub.range_requests)  # resumed with a Range request, not restarted
    assert _leftovers(tmp_path) == []
    _assert_loads_same_weights(rec, hub_root, "step16")


def test_persistent_failure_is_a_clear_error_with_no_partial_file(hub, manifest, tmp_path):
    hub.inject("5xx_get", "model.safetensors", times=100)
    with pytest.raises(FetchFailedError, match="3 attempts"):
        fetch_checkpoint(manifest, "step16", tmp_path / "s", attempts=3, backoff_s=0.01)
    assert hub.count("GET", "model.safetensors") == 3  # bounded
    assert _leftovers(tmp_path) == []
    assert not list(tmp_path.rglob("model.safetensors"))


def test_persistent_5xx_on_metadata_is_bounded_too(hub, manifest, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub's own backoff waits up to 23 s
    hub.inject("5xx", "config.json", times=10_000)
    with pytest.raises(FetchFailedError, match="2 attempts"):
        fetch_checkpoint(manifest, "step16", tmp_path / "s", attempts=2, backoff_s=0.01)
    assert 2 <= hub.count("HEAD", "config.json") <= 2 * 8
    assert hub.count("GET", "/resolve/") == 0
    assert _leftovers(tmp_path) == [] and not (tmp_path / "s" / "fetched.json").exists()


def test_wrong_hash_removes_the_file(hub, manifest, tmp_path):
    hub.inject("corrupt", "model.safetensors", times=1)
    dest = tmp_path / "step512"
    with pytest.raises(HashMismatchError, match="removed"):
        fetch_checkpoint(manifest, "step512", dest, backoff_s=0.01)
    assert not list(dest.rglob("model.safetensors"))
    entry = next(e for e in manifest["revisions"] if e["revision"] == "step512")
    assert not any(p.name == entry["files"][0]["sha256"] for p in _blobs(dest))
    assert _leftovers(tmp_path) == [] and not (dest / "fetched.json").exists()
    fetch_checkpoint(manifest, "step512", dest)  # the next run fetches it cleanly
    assert (dest / "fetched.json").exists()


def test_not_enough_disk_is_checked_before_downloading(hub, manifest, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fetch_mod.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(InsufficientDiskError, match="not enough free disk") as err:
        fetch_checkpoint(manifest, "step2", tmp_path / "step2")
    assert "KiB" in str(err.value) and "1000 B free" in str(err.value)
    assert hub.count(contains="/resolve/") == 0
    assert not list(tmp_path.rglob("*.safetensors"))


def test_duplicates_are_never_fetched(hub, manifest, tmp_path):
    assert "step8" not in [e["revision"] for e in probed_revisions(manifest)]
    with pytest.raises(DuplicateCheckpointError, match="step512"):
        fetch_checkpoint(manifest, "step8", tmp_path / "step8")
    assert hub.count(contains="/resolve/") == 0


def test_revision_not_in_manifest(manifest, tmp_path):
    with pytest.raises(RevisionNotFoundError) as err:
        fetch_checkpoint(manifest, "step3", tmp_path / "x")
    assert {"step2", "step4"} & set(err.value.closest)


def test_gated_repo_fetch_needs_a_token(hub, tmp_path):
    m = resolve_model("g", "g", GATED, "hub", "all", None, endpoint=hub.endpoint, token="hf_ok")
    with pytest.raises(GatedRepoError, match="HF_TOKEN"):
        fetch_checkpoint(m, "step0", tmp_path / "g", token=False)
    assert not list(tmp_path.rglob("*.safetensors"))
    fetch_checkpoint(m, "step0", tmp_path / "g", token="hf_ok")


def _delete_fetch_folder(dest: Path) -> int:
    """What the workflow does once a checkpoint's probe job has run: the fetch rule's output is
    ``temp(directory(...))`` (rules/fetch.smk), so Snakemake deletes the whole folder. Returns its bytes."""
    size = dir_size(dest)
    shutil.rmtree(dest)
    return size


def test_local_source_fetch_is_a_no_op(hub_root, tmp_path):
    root, commits = hub_root
    m = resolve_model("mini", "p", REPO, "local", "log:3", None, cache_dir=root)
    before = dir_size(root)
    rec = fetch_checkpoint(m, "step0", tmp_path / "step0")
    assert rec["cache_dir"] == str(root) and rec["local"] is True
    assert [p.name for p in (tmp_path / "step0").rglob("*")] == ["fetched.json"]  # nothing copied
    _delete_fetch_folder(tmp_path / "step0")
    assert dir_size(root) == before  # the local cache's files are not the fetch folder's to delete


def test_sweep_disk_stays_below_two_checkpoints(hub, hub_root, manifest, tmp_path):
    """Fetch -> load ("probe") -> write a result -> delete the fetch folder (the workflow's temp()),
    over every probed checkpoint: everything fetched lies inside that folder, so nothing stays behind."""
    from transformers import AutoModelForCausalLM

    root, commits = hub_root
    revisions = [e["revision"] for e in probed_revisions(manifest)]
    assert "step8" not in revisions  # the duplicate is not fetched
    one = max(checkpoint_bytes(root, REPO, commits[r]) for r in revisions)
    resources, results = tmp_path / "resources", tmp_path / "results"
    peak = 0
    for rev in revisions:
        dest = resources / rev
        rec = fetch_checkpoint(manifest, rev, dest)
        model = AutoModelForCausalLM.from_pretrained(REPO, revision=rev, cache_dir=rec["cache_dir"],
                                                     local_files_only=True)
        write_json(results / rev / "probe.json", {"n_params": sum(p.numel() for p in model.parameters())})
        peak = max(peak, dir_size(resources) + dir_size(results))
        freed = _delete_fetch_folder(dest)
        assert freed >= checkpoint_bytes(root, REPO, commits[rev])  # the weights were in the folder
    assert peak < 2 * one + dir_size(results)
    remaining = [str(p.relative_to(resources)) for p in resources.rglob("*") if p.is_file()]
    assert remaining == []  # nothing was fetched outside the checkpoints' own folders


def _bin_repo(root, repo, malicious: bool):
    """A repo whose only weights are pytorch_model.bin (from a seeded model, or a hostile pickle)."""
    import pickle

    commits = build_hub_cache(root, repo, {"step0": 0, "step1000": 1000}, tokenizer=False)
    org, name = repo.split("/")
    for commit in commits.values():
        snap = root / f"models--{org}--{name}" / "snapshots" / commit
        st = snap / "model.safetensors"
        if malicious:
            class Evil:
                def __reduce__(self):
                    return (os.system, ("echo pwned",))
            (snap / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}))
        else:
            from safetensors.torch import load_file

            torch.save(load_file(st), snap / "pytorch_model.bin")
        st.unlink()
    return commits


def test_bin_weights_go_through_the_weights_only_path(tmp_path):
    from transformers import AutoModelForCausalLM

    from icl_probe.hub.errors import CheckpointSourceError
    from icl_probe.hub.resolve import weight_files

    assert weight_files(["pytorch_model.bin", "model.safetensors"]) == ("safetensors", ["model.safetensors"])
    assert weight_files(["pytorch_model-00002-of-00002.bin", "pytorch_model-00001-of-00002.bin", "training_args.bin"]) \
        == ("pytorch", ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"])
    root = tmp_path / "hub"
    _bin_repo(root, "acme/bin-ok", malicious=False)
    _bin_repo(root, "acme/bin-evil", malicious=True)
    with serve_hub(root) as hub:
        m = resolve_model("s", "ok", "acme/bin-ok", "hub", "all", None, endpoint=hub.endpoint)
        assert m["revisions"][0]["format"] == "pytorch"
        rec = fetch_checkpoint(m, "step1000", tmp_path / "ok")
        model = AutoModelForCausalLM.from_pretrained("acme/bin-ok", revision="step1000", cache_dir=rec["cache_dir"],
                                                     local_files_only=True)
        assert model.config.model_type == "gpt_neox"
        m = resolve_model("s", "evil", "acme/bin-evil", "hub", "all", None, endpoint=hub.endpoint)
        with pytest.raises(CheckpointSourceError, match="weights_only=True"):
            fetch_checkpoint(m, "step1000", tmp_path / "evil")
        assert not list((tmp_path / "evil").rglob("*.bin")) and not (tmp_path / "evil" / "fetched.json").exists()
        evil_sha = m["revisions"][-1]["files"][0]["sha256"]
        assert evil_sha not in {p.name for p in _blobs(tmp_path / "evil")}


def test_a_rate_limit_is_waited_out_as_the_hub_asks(hub, hub_root, manifest, tmp_path):
    """HTTP 429 with Retry-After (the Hub's per-IP limit) on the file's metadata request, twice:
    huggingface_hub retries the first at once (its fast path), then waits as asked; the request
    after the last 429 comes no sooner than Retry-After, though our own backoff is 0.01 s."""
    hub.retry_after_s = 2
    hub.inject("429", "model.safetensors", times=2)
    rec = fetch_checkpoint(manifest, "step16", tmp_path / "step16", backoff_s=0.01)
    assert all(f.times == 0 for f in hub.faults)
    hits = [(t, status) for (_, path, status), t in zip(hub.requests, hub.request_times)
            if path.endswith("/model.safetensors")]
    last_429 = max(i for i, (_, st) in enumerate(hits) if st == 429)
    assert [st for _, st in hits].count(429) == 2
    assert hits[last_429 + 1][0] - hits[last_429][0] >= 2.0
    _assert_loads_same_weights(rec, hub_root, "step16")


def test_retry_after_is_read_from_the_error_chain(monkeypatch):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    req = httpx2.Request("GET", "http://127.0.0.1/x")
    resp = httpx2.Response(429, headers={"Retry-After": "7"}, request=req)
    err = HfHubHTTPError("429 Too Many Requests", response=resp)
    try:
        raise RuntimeError("wrapped") from err
    except RuntimeError as wrapped:
        assert fetch_mod.retry_after_s(wrapped) == 7.0
    no_header = HfHubHTTPError("503", response=httpx2.Response(503, request=req))
    assert fetch_mod.retry_after_s(no_header) is None
    waits = []
    calls = iter([err, err, "ok"])

    def fn():
        x = next(calls)
        if isinstance(x, Exception):
            raise x
        return x

    monkeypatch.setattr(fetch_mod.time, "sleep", waits.append)
    assert fetch_mod.with_retries(fn, what="t", attempts=3, backoff_s=0.01, max_retry_after_s=5) == "ok"
    assert waits == [5.0, 5.0]  # as asked (7 s), capped at max_retry_after_s


def test_a_stalled_transfer_is_aborted_and_resumed(hub, hub_root, manifest, tmp_path, monkeypatch):
    """The server sends half the weights, then nothing for 30 s: with stall_s=1 the fetch gives up on
    that transfer after about a second and resumes it with a Range request, well before 30 s."""
    import time

    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    hub.stall_s = 30.0
    hub.inject("stall", "model.safetensors", times=1)
    t0 = time.monotonic()
    rec = fetch_checkpoint(manifest, "step16", tmp_path / "step16", backoff_s=0.01, stall_s=1.0)
    took = time.monotonic() - t0
    assert all(f.times == 0 for f in hub.faults)
    assert took < 15, took
    assert any(p.endswith("model.safetensors") and r.startswith("bytes=") and r != "bytes=0-"
               for p, r in hub.range_requests)
    assert hf_constants.HF_HUB_DOWNLOAD_TIMEOUT != 1.0  # restored after the fetch
    _assert_loads_same_weights(rec, hub_root, "step16")


def test_probing_a_fetched_checkpoint_makes_no_hub_request(small_settings, tmp_path):
    """After the fetch, the probe job loads the checkpoint by its commit with local_files_only: the
    stand-in (HF_ENDPOINT of the probe process) sees no request while it runs, and the results
    are the revision's. The fetched cache's ref for the branch is removed first, so a load by
    branch name could not find the files: only the load by commit does."""
    import json
    import subprocess
    import sys

    from icl_probe.config import validate_config
    from icl_probe.runner import make_prompts

    root = tmp_path / "hub"
    _, commit = build_minisuite_repo(root, "step100")
    settings = validate_config({"suites": {"s": {"source": "hub", "models": {"m": {"repo_id": "mini/pythia-s"}}}},
                                "probes": small_settings})
    with serve_hub(root) as hub:
        manifest = resolve_model("mini", "pythia-s", "mini/pythia-s", "hub", "all", tmp_path / "manifest.json",
                                 endpoint=hub.endpoint)
        fetch_checkpoint(manifest, "step100", tmp_path / "fetched")
        make_prompts("mini/pythia-s", "step100", tmp_path / "prompts", settings, cache_dir=tmp_path / "fetched",
                     local_files_only=True)
        (tmp_path / "fetched" / "models--mini--pythia-s" / "refs" / "step100").unlink()
        before = len(hub.requests)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HOME": str(tmp_path / "hf-home")}
        env.pop("HF_HUB_OFFLINE", None)
        proc = subprocess.run(
            [sys.executable, "-m", "icl_probe.cli", "probe", "--manifest", str(tmp_path / "manifest.json"),
             "--revision", "step100", "--cache-dir", str(tmp_path / "fetched"), "--out", str(tmp_path / "out"),
             "--prompts", str(tmp_path / "prompts"), "--settings", json.dumps(settings)], env=env, capture_output=True, text=True, timeout=600)
        during = hub.requests[before:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert during == []
    result = json.loads((tmp_path / "out" / "gd_readout.json").read_text())
    assert result["revision"] == "step100" and result["provenance"]["commit"] == commit
