"""Bad files in a checkpoint on disk: a clear error naming the file, never a library traceback or a number.

Each case damages one file of a tiny Hub-cache checkpoint the way it happens in
practice (a download cut short, an editor or a full disk mangling a JSON file, a
tokenizer left out) and loads it the way a probe job does (``local_files_only``).
"""

from __future__ import annotations

import json
import pickle
import re
import struct

import pytest
import torch

from hub_fixtures import build_hub_cache
from icl_probe import cli
from icl_probe.hub.errors import DamagedCheckpointError, RemoteCodeRefusedError
from icl_probe.hub.integrity import check_safetensors, check_snapshot, snapshot_dir
from icl_probe.runner import load_checkpoint, load_tokenizer

REPO = "acme/tiny"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity") / "hub"
    build_hub_cache(root, REPO, {"step0": 0}, main="step0")
    return root


@pytest.fixture()
def cache(pristine, tmp_path):
    """A fresh copy of the checkpoint for each test to damage; returns (cache_dir, snapshot folder)."""
    import shutil

    root = tmp_path / "hub"
    shutil.copytree(pristine, root, symlinks=True)
    return root, snapshot_dir(REPO, "step0", root)


def _load(root):
    return load_checkpoint(REPO, "step0", cache_dir=root, local_files_only=True)


def test_a_whole_checkpoint_passes_and_loads(cache):
    root, snap = cache
    check_snapshot(snap)
    lm, tok = _load(root)
    assert lm.config.model_type == "gpt_neox" and tok.pad_token is not None


@pytest.mark.parametrize("keep", [0, 5, 200, -1000, -1])
def test_truncated_weight_file_is_named(cache, keep):
    root, snap = cache
    weights = snap / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(keep if keep >= 0 else size + keep)
    with pytest.raises(DamagedCheckpointError, match=r"model\.safetensors is truncated.*delete .*and download"):
        _load(root)


@pytest.mark.parametrize("layout", ["fetch", "minisuite"])
def test_the_fix_named_follows_where_the_checkpoint_lives(cache, layout):
    """A workflow fetch folder is deleted whole (the fetch job runs again); a mini-suite model's
    folder is deleted whole (the build job runs again)."""
    root, snap = cache
    repo_dir = snap.parent.parent
    if layout == "fetch":
        (root / "fetched.json").write_text("{}")
        target = root
    else:
        (repo_dir / "icl_probe_build.json").write_text("{}")
        target = repo_dir
    (snap / "config.json").write_text("{")
    with pytest.raises(DamagedCheckpointError, match=f"delete {re.escape(str(target))} and run the workflow again"):
        _load(root)


def test_weight_file_longer_than_its_header_is_refused(cache):
    root, snap = cache
    with open(snap / "model.safetensors", "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(DamagedCheckpointError, match="longer than its header says"):
        _load(root)


def test_safetensors_check_agrees_with_the_written_length(tmp_path):
    """The length rule on a file safetensors itself wrote (two tensors, metadata)."""
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 5), "b": torch.ones(7, dtype=torch.float16)}, path, metadata={"format": "pt"})
    check_safetensors(path, tmp_path)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert path.stat().st_size == 8 + n + 3 * 5 * 4 + 7 * 2


@pytest.mark.parametrize("text", ['{"model_type": "gpt_neox", ', "", "\x00\x01binary", "[1, 2]", '{"hidden_size": 4}'])
def test_unparsable_config_is_named(cache, text):
    root, snap = cache
    (snap / "config.json").write_text(text)
    with pytest.raises(DamagedCheckpointError, match="config.json"):
        _load(root)


@pytest.mark.parametrize("removed", [("tokenizer.json",), ("tokenizer.json", "tokenizer_config.json")])
def test_missing_tokenizer_is_named(cache, removed):
    root, snap = cache
    for name in removed:
        (snap / name).unlink()
    with pytest.raises(DamagedCheckpointError, match="no tokenizer files"):
        load_tokenizer(REPO, "step0", cache_dir=root, local_files_only=True)


def test_unparsable_tokenizer_is_named(cache):
    root, snap = cache
    text = (snap / "tokenizer.json").read_text()
    (snap / "tokenizer.json").write_text(text[: len(text) // 2])
    with pytest.raises(DamagedCheckpointError, match="tokenizer.json is not valid JSON"):
        load_tokenizer(REPO, "step0", cache_dir=root, local_files_only=True)


def test_missing_revision_in_a_local_cache_is_named(cache):
    root, _ = cache
    with pytest.raises(DamagedCheckpointError, match="step9.*is not in the cache"):
        load_checkpoint(REPO, "step9", cache_dir=root, local_files_only=True)


def test_shard_index_naming_a_missing_shard_is_named(cache):
    root, snap = cache
    (snap / "model.safetensors").rename(snap / "model-00001-of-00002.safetensors")
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(DamagedCheckpointError, match="model-00002-of-00002.safetensors"):
        check_snapshot(snap)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bin_checkpoint_that_would_run_code_is_refused(cache, capsys):
    root, snap = cache
    (snap / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, snap / "pytorch_model.bin")
    check_snapshot(snap)  # a plain state dict passes
    with open(snap / "pytorch_model.bin", "wb") as f:
        pickle.dump({"w": _RunsCode()}, f)
    with pytest.raises(DamagedCheckpointError, match="weights_only=True"):
        _load(root)
    assert "this must never run" not in capsys.readouterr().out


def test_cli_reports_a_damaged_checkpoint_in_one_line(cache, capsys):
    root, snap = cache
    with open(snap / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    settings = {"enabled": ["attention_sinks"], "seeds": [1], "batch_size": 4, "bootstrap": 10,
                "attention_sinks": {"n_sequences": 4, "seq_len": 8, "eps": 0.3},
                "runtime": {"device": "cpu", "dtype": "float32"}}
    out = root.parent / "out"
    rc = cli.main(["probe", "--model", REPO, "--revision", "step0", "--cache-dir", str(root), "--local-files-only",
                   "--settings", json.dumps(settings), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "model.safetensors is truncated" in err and "Traceback" not in err
    assert not (out / "attention_sinks.json").exists()  # no result from a damaged checkpoint


def test_checkpoint_that_needs_its_own_code_is_refused_and_the_code_never_runs(cache, tmp_path):
    root, snap = cache
    marker = tmp_path / "code-ran"
    config = json.loads((snap / "config.json").read_text())
    config.update(model_type="evil_lm", auto_map={"AutoConfig": "evil.EvilConfig",
                                                  "AutoModelForCausalLM": "evil.EvilModel"})
    (snap / "config.json").write_text(json.dumps(config))
    (snap / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(RemoteCodeRefusedError, match="never runs a checkpoint's code"):
        _load(root)
    assert not marker.exists()


def test_partial_cache_is_not_called_damaged_when_downloading(cache):
    """Without local_files_only, files not yet downloaded are not an error; damaged ones still are."""
    from icl_probe.hub.integrity import check_cached_checkpoint

    root, snap = cache
    (snap / "model.safetensors").unlink()
    (snap / "tokenizer.json").unlink()
    assert check_cached_checkpoint(REPO, "step0", root) == snap
    with pytest.raises(DamagedCheckpointError, match="no weight files"):
        check_cached_checkpoint(REPO, "step0", root, tokenizer=False, required=True)
    (snap / "config.json").write_text("{")
    with pytest.raises(DamagedCheckpointError, match="config.json is not valid JSON"):
        check_cached_checkpoint(REPO, "step0", root)
