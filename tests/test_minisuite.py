"""Tests of the embedded mini-suite: tokenizer, corpus, schedule, and one real build."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from icl_probe.minisuite import build as mb
from icl_probe.minisuite import corpus as mc
from icl_probe.minisuite.tokenizer import build_tokenizer, vocabulary


# ----------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_digits_are_single_tokens(tok):
    ids = set()
    for d in range(10):
        enc = tok(str(d), add_special_tokens=False).input_ids
        assert len(enc) == 1, (d, enc)
        ids.add(enc[0])
    assert len(ids) == 10
    assert not ids & set(tok.all_special_ids)


def test_gd_prompt_encoding_keeps_newline(tok):
    ids = tok("3 -> 7\n4 ->").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["3", "->", "7", "\n", "4", "->"]
    nl = tok.convert_tokens_to_ids("\n")
    assert ids[3] == nl and nl not in tok.all_special_ids
    # several pairs, as the GD-readout probe writes them
    ids = tok("3 -> 7\n1 -> 5\n4 ->").input_ids
    assert len(ids) == 10 and ids.count(nl) == 2


def test_pythia_like_special_tokens(tok):
    assert tok.pad_token is None and tok.pad_token_id is None
    assert tok.eos_token == tok.bos_token == "<|endoftext|>"
    assert tok.all_special_ids == [tok.eos_token_id]
    # no BOS/EOS added on encode (as Pythia)
    assert tok("t000 t001").input_ids == [tok.convert_tokens_to_ids("t000"),
                                          tok.convert_tokens_to_ids("t001")]
    assert 256 + 13 <= len(tok) <= 400
    assert len(tok) == len(vocabulary())


def test_tokenizer_round_trips_through_save(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "3 -> 7\n1 -> 5\n4 -> t017 the"
    assert again(text).input_ids == tok(text).input_ids
    assert again.pad_token is None


# ----------------------------------------------------------------- corpus


def test_corpus_is_deterministic_and_seeded():
    a = mc.corpus(0, 8, 64)
    b = mc.corpus(0, 8, 64)
    c = mc.corpus(1, 8, 64)
    assert a.shape == (8, 64) and a.dtype == np.int64
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < len(vocabulary())


def test_gd_documents_follow_the_prompt_format(tok):
    rng = np.random.default_rng(0)
    v = mc.Vocab()
    for _ in range(50):
        text = tok.decode(mc.gd_document(rng, v))
        lines = [ln.strip() for ln in text.split("\n")]
        pairs = [tuple(int(t) for t in re.fullmatch(r"(\d) -> (\d)", ln).groups())
                 for ln in lines]
        # one task per document: y = a*x + b, a in {1,2}, b in 0..9-4a
        fits = [(a, b) for a in (1, 2) for b in range(0, 10 - 4 * a)
                if all(y == a * x + b for x, y in pairs)]
        assert fits and all(0 <= x <= 4 for x, _ in pairs)


def test_heldout_sets():
    ind = mc.heldout_induction(0, n_sequences=4, block_len=8)
    assert ind.shape == (4, 16) and np.array_equal(ind[:, :8], ind[:, 8:])
    assert (ind != mc.Vocab().eos).all()
    ids, y = mc.heldout_gd(0, n_prompts=5, k=5)
    assert ids.shape == (5, 22) and ((0 <= y) & (y <= 9)).all()
    assert ids[0, -1] == mc.Vocab().arrow


# ----------------------------------------------------------------- schedule, names


def test_schedule_is_pythia_like():
    assert mb.schedule(800, 100) == [0, 1, 2, 4, 8, 16, 32, 64] + list(range(100, 801, 100))
    assert mb.schedule(250, 100) == [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 250]
    for name, m in mb.MODELS.items():
        steps = mb.schedule(m.final_step, m.interval)
        assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == m.final_step


def test_branch_names():
    assert mb.branch_name("pythia-s", 0) == "step0"
    assert mb.branch_name("pythia-m", 128) == "step128"
    tps = mb.tokens_per_step("olmo2-s")
    assert tps == mb.MODELS["olmo2-s"].batch_size * mb.MODELS["olmo2-s"].seq_len
    assert mb.branch_name("olmo2-s", 0) == "stage1-step0-tokens0B"
    assert tps == 1024  # batch 8 x 128 tokens
    assert mb.branch_name("olmo2-s", 200) == "stage1-step200-tokens0.000205B"
    pat = re.compile(r"stage1-step(\d+)-tokens(\d+(?:\.\d*[1-9])?)B")
    for step in mb.schedule(mb.MODELS["olmo2-s"].final_step):
        name = mb.branch_name("olmo2-s", step)
        mt = pat.fullmatch(name)
        assert mt and int(mt.group(1)) == step and "e" not in mt.group(2)
        assert float(mt.group(2)) == pytest.approx(step * tps / 1e9, rel=5e-3)
    assert mb.cache_folder("pythia-s") == "models--mini--pythia-s"
    with pytest.raises(ValueError, match="unknown mini-suite model"):
        mb.branch_name("gpt-x", 1)


# ----------------------------------------------------------------- one real build


def _interior_fall(losses: list[float]) -> tuple[float, int, int]:
    """Largest loss[i] - loss[j] with i < j and both checkpoints strictly inside the
    schedule (neither the first nor the last); returns (fall, i, j)."""
    n = len(losses)
    return max((losses[i] - losses[j], i, j) for i in range(1, n - 1) for j in range(i + 1, n - 1))


@pytest.mark.slow
@pytest.mark.parametrize("name", mb.RESEARCH_MODELS)
def test_built_suite_loads_by_revision_and_shows_emergence(default_workflow, name):
    """From the mini-suite the default workflow built: every branch loads through
    from_pretrained(revision=...), and each model's held-out induction loss falls by at
    least 2 nats between checkpoints strictly inside the schedule."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = default_workflow / "resources" / "minisuite" / "hub"
    repo_id = mb.MODELS[name].repo_id
    repo = cache / mb.cache_folder(name)
    info = json.loads((repo / "icl_probe_build.json").read_text())
    steps = info["schedule"]
    assert steps == mb.schedule(mb.MODELS[name].final_step, mb.MODELS[name].interval)
    assert info["tokens_per_step"] == mb.tokens_per_step(name)

    refs = {p.name: p.read_text() for p in (repo / "refs").iterdir()}
    assert set(refs) == {mb.branch_name(name, s) for s in steps} | {"main"}
    assert refs["main"] == refs[mb.branch_name(name, steps[-1])]
    assert all(re.fullmatch(r"[0-9a-f]{40}", c) for c in refs.values())

    held = torch.from_numpy(mc.heldout_induction(1234, n_sequences=24))
    losses = []
    for step in steps:
        rev = mb.branch_name(name, step)
        model = AutoModelForCausalLM.from_pretrained(
            repo_id, revision=rev, cache_dir=cache, local_files_only=True)
        snap = repo / "snapshots" / refs[rev]
        digest = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
        assert (snap / "model.safetensors").resolve().name == digest
        model.eval()
        losses.append(mb.induction_loss(model, held))
    tok = AutoTokenizer.from_pretrained(repo_id, revision="main", cache_dir=cache,
                                        local_files_only=True)
    assert tok.pad_token is None and len(tok("3 -> 7\n4 ->").input_ids) == 6

    fall, i, j = _interior_fall(losses)
    assert fall >= 2.0, (losses, steps)
    assert 0 < i < j < len(steps) - 1

    # the GD task is learned: final-layer error far below step 0
    ids, y = (torch.from_numpy(a) for a in mc.heldout_gd(99, n_prompts=48))
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    first = AutoModelForCausalLM.from_pretrained(repo_id, revision=mb.branch_name(name, 0),
                                                 cache_dir=cache, local_files_only=True)
    gd0 = mb.gd_metrics(first.eval(), ids, y, digits)
    gd1 = mb.gd_metrics(model, ids, y, digits)
    assert gd1["gd_mean_err"] < 0.5 * gd0["gd_mean_err"]
    assert gd1["gd_acc"] >= 0.6


def test_build_is_deterministic_and_atomic(tmp_path, monkeypatch):
    """Two builds of a short recipe give byte-identical files; a rebuild replaces
    the folder as a whole and leaves no temporary folder behind."""
    import dataclasses

    short = dataclasses.replace(mb.MODELS["olmo2-s"], final_step=6, interval=4)
    monkeypatch.setitem(mb.MODELS, "olmo2-s", short)
    a = mb.build_model("olmo2-s", tmp_path / "a", seed=3, log=lambda *x: None)
    b = mb.build_model("olmo2-s", tmp_path / "b", seed=3, log=lambda *x: None)
    c = mb.build_model("olmo2-s", tmp_path / "c", seed=4, log=lambda *x: None)
    branches = [mb.branch_name("olmo2-s", s) for s in mb.schedule(6, 4)]
    assert mb.tokens_per_step("olmo2-s") == 1024  # batch 8 x 128 tokens
    assert branches == ["stage1-step0-tokens0B", "stage1-step1-tokens0.00000102B",
                        "stage1-step2-tokens0.00000205B", "stage1-step4-tokens0.0000041B",
                        "stage1-step6-tokens0.00000614B"]
    for br in branches + ["main"]:
        ca, cb = (a / "refs" / br).read_text(), (b / "refs" / br).read_text()
        assert ca == cb
        wa = (a / "snapshots" / ca / "model.safetensors").read_bytes()
        wb = (b / "snapshots" / cb / "model.safetensors").read_bytes()
        assert wa == wb
    assert (a / "refs" / "main").read_text() != (c / "refs" / "main").read_text()
    commits = {(a / "refs" / br).read_text() for br in branches}
    assert len(commits) == len(branches)  # every checkpoint is a distinct snapshot

    # rebuild in place: same content, nothing left over beside the model folder
    again = mb.build_model("olmo2-s", tmp_path / "a", seed=3, log=lambda *x: None)
    assert again == a and [p.name for p in (tmp_path / "a").iterdir()] == [a.name]
    assert (a / "refs" / "main").read_text() == (b / "refs" / "main").read_text()

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained("mini/olmo2-s", revision=branches[2],
                                                 cache_dir=tmp_path / "a", local_files_only=True)
    assert type(model).__name__ == "Olmo2ForCausalLM"

    with pytest.raises(SystemExit):
        mb.main(["--model", "nope", "--cache-dir", str(tmp_path)])


def test_the_emergence_test_covers_exactly_the_default_runs_models():
    """RESEARCH_MODELS (whose emergence is asserted above) are the models config.yaml analyses;
    the smoke-test model is in the suite but not in either."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    default = [m["repo_id"].split("/", 1)[1] for m in cfg["suites"]["mini"]["models"].values()]
    assert sorted(default) == sorted(mb.RESEARCH_MODELS)
    assert set(mb.RESEARCH_MODELS) < set(mb.MODELS) and "pythia-xs" not in mb.RESEARCH_MODELS
