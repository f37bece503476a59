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


@pytest.mark.slow
def test_pythia_and_olmo_style_sweeps_run_through_a_hub_over_http(hub_root, tmp_path):
    cfg = scenario_config("hub")  # .test/config_hub: pythia-s by four named branches, olmo2-s by log:3
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(json.dumps(cfg))
    with serve_hub(hub_root) as hub:
        env_endpoint = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1",
                        "HF_HOME": str(tmp_path / "hf-home")}
        old = {k: os.environ.get(k) for k in env_endpoint}
        os.environ.update(env_endpoint)
        try:
            run_snakemake(workdir, "--cores", "2")
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        downloads = [r for r in hub.requests if "/resolve/" in r[1] and r[0] == "GET"]
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
