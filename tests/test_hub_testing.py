"""The local Hub stand-in answers huggingface_hub's own client calls like the Hub does."""

from __future__ import annotations

import hashlib
import time

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as hf_errors

from hub_fixtures import build_hub_cache
from icl_probe.hub.testing import git_blob_oid, serve_hub

REPO = "mini/pythia-s"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("hub") / "hub"
    build_hub_cache(r, REPO, {"step0": 0, "step1": "=step0", "step8": 8}, main="step8")
    build_hub_cache(r, "acme/gated", {"step0": 0})
    return r


def _snapshot(root, branch):
    repo = root / "models--mini--pythia-s"
    return repo / "snapshots" / (repo / "refs" / branch).read_text()


def test_api_endpoints(root):
    with serve_hub(root) as hub:
        api = HfApi(endpoint=hub.endpoint, token=False)
        refs = {b.name: b.target_commit for b in api.list_repo_refs(REPO).branches}
        assert set(refs) == {"main", "step0", "step1", "step8"} and refs["main"] == refs["step8"]
        info = api.model_info(REPO, revision="step0")
        assert info.sha == refs["step0"] and "model.safetensors" in {s.rfilename for s in info.siblings}
        assert api.model_info(REPO).sha == refs["main"]
        tree = {f.path: f for f in api.list_repo_tree(REPO, revision="step0", expand=True)}
        data = (_snapshot(root, "step0") / "model.safetensors").read_bytes()
        assert tree["model.safetensors"].lfs.sha256 == hashlib.sha256(data).hexdigest()
        assert tree["model.safetensors"].lfs.size == len(data)
        cfg = (_snapshot(root, "step0") / "config.json").read_bytes()
        assert tree["config.json"].lfs is None and tree["config.json"].blob_id == git_blob_oid(cfg)
        paths = api.get_paths_info(REPO, ["config.json", "model.safetensors", "nope.txt"], revision="step1")
        assert sorted(p.path for p in paths) == ["config.json", "model.safetensors"]
        assert api.revision_exists(REPO, "step8") and not api.revision_exists(REPO, "step9")
        assert not api.repo_exists("mini/nope")


def test_download_by_branch_writes_refs(root, tmp_path):
    with serve_hub(root) as hub:
        path = hf_hub_download(REPO, "model.safetensors", revision="step8", cache_dir=tmp_path,
                               endpoint=hub.endpoint, token=False)
    assert open(path, "rb").read() == (_snapshot(root, "step8") / "model.safetensors").read_bytes()
    assert (tmp_path / "models--mini--pythia-s" / "refs" / "step8").read_text() == _snapshot(root, "step8").name


def test_errors_map_to_the_clients_exceptions(root, tmp_path):
    with serve_hub(root, gated={"acme/gated"}, tokens={"hf_ok"}) as hub:
        api = HfApi(endpoint=hub.endpoint, token=False)
        with pytest.raises(hf_errors.RevisionNotFoundError):
            hf_hub_download(REPO, "config.json", revision="step9", cache_dir=tmp_path, endpoint=hub.endpoint)
        with pytest.raises(hf_errors.EntryNotFoundError):
            hf_hub_download(REPO, "nope.bin", revision="step0", cache_dir=tmp_path, endpoint=hub.endpoint)
        with pytest.raises(hf_errors.RepositoryNotFoundError):
            api.list_repo_refs("mini/nope")
        with pytest.raises(hf_errors.GatedRepoError):
            api.list_repo_refs("acme/gated")
        with pytest.raises(hf_errors.GatedRepoError):
            HfApi(endpoint=hub.endpoint, token="hf_wrong").list_repo_refs("acme/gated")
        assert HfApi(endpoint=hub.endpoint, token="hf_ok").list_repo_refs("acme/gated").branches


def test_range_requests(root):
    data = (_snapshot(root, "step0") / "model.safetensors").read_bytes()
    with serve_hub(root) as hub:
        url = f"{hub.endpoint}/{REPO}/resolve/step0/model.safetensors"
        r = httpx2.get(url, headers={"Range": "bytes=100-"})
        assert r.status_code == 206 and r.content == data[100:]
        assert r.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert httpx2.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        h = httpx2.head(url)
        assert h.headers["X-Linked-Size"] == str(len(data))
        assert h.headers["X-Linked-Etag"].strip('"') == hashlib.sha256(data).hexdigest()


def test_unknown_fault_kind(root):
    with serve_hub(root) as hub, pytest.raises(ValueError, match="unknown fault"):
        hub.inject("meteor")


def test_request_budget_bounds_client_loops(root):
    with pytest.raises(RuntimeError, match="unbounded"):
        with serve_hub(root, max_requests=3) as hub:
            api = HfApi(endpoint=hub.endpoint, token=False)
            for _ in range(5):
                try:
                    api.list_repo_refs(REPO)
                except hf_errors.HfHubHTTPError:
                    pass


def test_server_stops_by_itself(root):
    with serve_hub(root, lifetime_s=0.3) as hub:
        time.sleep(0.8)
        with pytest.raises(httpx2.TransportError):
            httpx2.get(f"{hub.endpoint}/api/models/{REPO}/refs", timeout=2)


def test_throttled_link_is_shared_by_concurrent_downloads(root, tmp_path):
    """bandwidth_bps paces file bodies on one clock: two downloads at once take as long as
    their bytes at that rate together, not each alone; the bytes arrive intact."""
    from concurrent.futures import ThreadPoolExecutor

    data = (_snapshot(root, "step0") / "model.safetensors").read_bytes()
    bps = len(data) / 0.5  # one file alone: 0.5 s on the link
    with serve_hub(root, bandwidth_bps=bps) as hub:
        def get(rev):
            return hf_hub_download(REPO, "model.safetensors", revision=rev, cache_dir=tmp_path / rev,
                                   endpoint=hub.endpoint, token=False)

        t = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            paths = list(pool.map(get, ["step0", "step8"]))
        both = time.monotonic() - t
    assert open(paths[0], "rb").read() == data
    sizes = sum(len(open(p, "rb").read()) for p in paths)
    assert both >= 0.95 * sizes / bps  # the link's rate holds for the pair
    assert both < 10 * sizes / bps  # and the pacing does not stall
