"""The workflow against a Hub over HTTP: the local stand-in serving the mini-suite.

The real client code runs (huggingface_hub lists refs and trees and downloads files
from HF_ENDPOINT); a branch that serves another branch's weights is flagged in the
manifest and never downloaded.
"""

import json
import os
import shutil

import pandas as pd
import pytest
from workflow_utils import run_snakemake, scenario_config

from icl_probe.hub.testing import serve_hub


@pytest.fixture(scope="module")
def hub_root(default_workflow, tmp_path_factory):
    """The built mini-suite as a Hub; pythia-s's step1000 made to serve step2000's files."""
    root = tmp_path_factory.mktemp("hub")
    shutil.copytree(default_workflow / "resources" / "minisuite" / "hub", root, symlinks=True, dirs_exist_ok=True)
    refs = root / "models--mini--pythia-s" / "refs"
    (refs / "step1000").write_text((refs / "step2000").read_text())
    return root


def _run_against_hub(root, cfg: dict, workdir, hf_home):
    """The workflow with ``cfg`` against the stand-in serving ``root``; the stand-in's requests."""
    workdir.mkdir()
    (workdir / "config.yaml").write_text(json.dumps(cfg))
    with serve_hub(root) as hub:
        env_endpoint = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(hf_home)}
        old = {k: os.environ.get(k) for k in env_endpoint}
        os.environ.update(env_endpoint)
        try:
            run_snakemake(workdir, "--cores", "2")
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        return list(hub.requests)


@pytest.mark.slow
def test_pythia_and_olmo_style_sweeps_run_through_a_hub_over_http(hub_root, tmp_path):
    cfg = scenario_config("hub")  # .test/config_hub: pythia-s by four named branches, olmo2-s by log:3
    workdir = tmp_path / "work"
    requests = _run_against_hub(hub_root, cfg, workdir, tmp_path / "hf-home")
    downloads = [r for r in requests if "/resolve/" in r[1] and r[0] == "GET"]
    manifest = json.loads((workdir / "results/hubmini/pythia-s/manifest.json").read_text())
    dup = {e["revision"]: e["duplicate_of"] for e in manifest["revisions"]}
    assert dup == {"step0": None, "step500": None, "step1000": "step2000", "step2000": None}
    # the duplicate's weights were never requested; the 3 + 3 others' were, once each
    assert sum(path.endswith("/model.safetensors") for _, path, *_ in downloads) == 3 + 3
    for model, n in (("pythia-s", 3), ("olmo2-s", 3)):
        table = pd.read_csv(workdir / f"results/hubmini/{model}/table.csv")
        assert len(table) == n and table["error_reduction"].notna().all()
    stub = json.loads((workdir / "results/hubmini/pythia-s/step1000/gd_readout.json").read_text())
    assert stub["duplicate_of"] == "step2000" and "scalars" not in stub
    # weights are temporary: nothing fetched is left on disk
    assert not list((workdir / "resources" / "fetch").glob("**/*.safetensors"))


# OLMo-2-1124-7B's first branches as the Hub names them (no stage prefix; docs/checkpoints.md)
OLMO2_7B_EARLY = ["stage1-step0-tokens0B", "step150-tokens1B", "step600-tokens3B", "step2150-tokens10B"]


@pytest.mark.slow
def test_the_7bs_real_early_branch_names_resolve_fetch_and_probe(hub_root, tmp_path):
    """A stand-in repo allenai/OLMo-2-1124-7B whose branches carry the 7B's real early names (the
    weights are the mini olmo2-s's first four checkpoints): the preset's way of naming them, the
    recorded list, resolves; each is fetched, probed and lands in one stage-1 trajectory."""
    from icl_probe.hub.suites import parse_branch

    root = tmp_path / "hub7b"
    src = hub_root / "models--mini--olmo2-s"
    dst = root / "models--allenai--OLMo-2-1124-7B"
    shutil.copytree(src, dst, symlinks=True)
    mini = sorted((p for p in (src / "refs").iterdir() if p.name != "main"), key=lambda p: parse_branch(p.name).step)
    for p in (dst / "refs").iterdir():
        if p.name != "main":
            p.unlink()
    for name, ref in zip(OLMO2_7B_EARLY, mini):
        (dst / "refs" / name).write_text(ref.read_text())
    cfg = scenario_config("hub")
    cfg["suites"] = {"olmo2": {"source": "hub", "branch_list": "recorded", "models": {
        "olmo2-7b": {"repo_id": "allenai/OLMo-2-1124-7B", "revisions": OLMO2_7B_EARLY, "stage": 1}}}}
    workdir = tmp_path / "work"
    requests = _run_against_hub(root, cfg, workdir, tmp_path / "hf-home")
    manifest = json.loads((workdir / "results/olmo2/olmo2-7b/manifest.json").read_text())
    got = [(e["revision"], e["step"], e["stage"], e["tokens"]) for e in manifest["revisions"]]
    assert got == [(n, parse_branch(n).step, 1, parse_branch(n).tokens) for n in OLMO2_7B_EARLY]
    table = pd.read_csv(workdir / "results/olmo2/olmo2-7b/table.csv")
    assert list(table["step"]) == [0, 150, 600, 2150] and table["error_reduction"].notna().all()
    fetched = {path.split("/resolve/")[1].split("/")[0] for _, path, *_ in requests
               if "/resolve/" in path and path.endswith("model.safetensors")}
    assert len(fetched) == 4  # one download per branch (by commit or by name)


@pytest.mark.slow
def test_refinement_through_the_hub_resolves_the_range_skips_duplicates_and_downloads_only_what_it_probes(
        hub_root, tmp_path):
    """pythia-s through the stand-in, coarse [step0, step500, step5500], refinement on, and besides
    the fixture's step1000 (serving step2000's weights) step1500 made to serve step5000's, right
    where the first split of [500, 5500] falls (the log middle is 1658): the manifest lists every
    branch of the range with both duplicates, no round picks one, and only probed weights are fetched."""
    root = tmp_path / "hub"
    shutil.copytree(hub_root, root, symlinks=True)
    refs = root / "models--mini--pythia-s" / "refs"
    (refs / "step1500").write_text((refs / "step5000").read_text())
    cfg = scenario_config("hub")
    cfg["suites"]["hubmini"]["models"] = {"pythia-s": {
        "repo_id": "mini/pythia-s", "revisions": ["step0", "step500", "step5500"],
        "refine": {"transitions": ["half_max", "induction"], "budget": 8}}}
    workdir = tmp_path / "work"
    requests = _run_against_hub(root, cfg, workdir, tmp_path / "hf-home")
    model_dir = workdir / "results/hubmini/pythia-s"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    dup = {e["revision"]: e["duplicate_of"] for e in manifest["revisions"]}
    assert len(dup) == 21  # every branch of step0..step5500
    assert {r: d for r, d in dup.items() if d} == {"step1000": "step2000", "step1500": "step5000"}
    rounds = sorted(model_dir.glob("refine/round*.json"), key=lambda p: int(p.stem[5:]))
    records = [json.loads(p.read_text()) for p in rounds]
    added = [r for rec in records for r in rec["added"]]
    assert added and not {"step1000", "step1500"} & set(added)
    last = records[-1]
    assert last["done"] and last["budget_used"] == len(added) <= 8
    steps = {e["revision"]: e["step"] for e in manifest["revisions"]}
    pool = [s for r, s in steps.items() if dup[r] is None]
    states = last["transitions"]
    assert "adjacent" in {v["status"] for v in states.values()}, states
    for name, state in states.items():
        assert state["status"] in ("adjacent", "undefined", "budget spent"), (name, state)
        if state["status"] == "adjacent":
            lo, hi = state["bracket"]
            assert not [s for s in pool if lo < s < hi], (name, state)
    stats = json.loads((model_dir / "stats.json").read_text())
    assert stats["refinement"] == last and not stats["excluded"]
    table = pd.read_csv(model_dir / "table.csv")
    assert sorted(table["revision"]) == sorted(last["analysed"])
    downloads = [path for method, path, *_ in requests if method == "GET" and "/resolve/" in path
                 and path.endswith("/model.safetensors")]
    assert len(downloads) == len(last["analysed"])  # each probed checkpoint once; nothing else
