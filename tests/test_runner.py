"""The checkpoint runner: one load, four probes, result files in the ARCHITECTURE.md format."""

import json

import numpy as np
import pytest
import torch
import transformers

from conftest import make_model, make_tokenizer, zero_blocks
from icl_probe.arch import UnsupportedArchitectureError
from icl_probe.probes import associative_recall, attention_sinks, gd_readout, induction
from icl_probe.prompts import PromptError, PromptTooLongError
from icl_probe.runner import make_prompts, probe_checkpoint

SCALARS = {"gd_readout": gd_readout.SCALARS, "induction": induction.SCALARS,
           "attention_sinks": attention_sinks.SCALARS, "associative_recall": associative_recall.SCALARS}


@pytest.fixture
def prompts_path(saved_model, small_settings, tmp_path):
    make_prompts(str(saved_model), None, tmp_path / "prompts", small_settings)
    return tmp_path / "prompts"


def _strip(record):
    return {k: v for k, v in record.items() if k not in ("timing", "provenance")}


def test_probe_checkpoint_writes_every_probe_once(saved_model, small_settings, tmp_path, count_loads):
    prompts = make_prompts(str(saved_model), None, tmp_path / "prompts", small_settings)
    assert set(prompts) == set(SCALARS)  # one prompt file per probe
    assert count_loads == []  # prompts need the tokenizer and config only
    out = probe_checkpoint(str(saved_model), "step128", tmp_path / "out", small_settings, tmp_path / "prompts",
                           provenance={"commit": "c" * 40, "weight_sha256": {"model.safetensors": "f" * 64}},
                           tokens=262144, suite="mini", model="pythia-s")
    assert len(count_loads) == 1  # one model load for all four probes
    assert count_loads[0][1]["revision"] == "step128" and "trust_remote_code" not in count_loads[0][1]
    assert set(out) == set(SCALARS)
    for probe, path in out.items():
        sha = json.loads(prompts[probe].read_text())["prompts_sha256"]
        assert path == tmp_path / "out" / f"{probe}.json"
        r = json.loads(path.read_text())
        assert r["schema_version"] == 1 and r["probe"] == probe
        assert (r["model"], r["suite"], r["revision"], r["step"], r["tokens"]) == (
            "pythia-s", "mini", "step128", 128, 262144)
        p = r["provenance"]
        assert p["prompts_sha256"] == sha and p["commit"] == "c" * 40 and p["device"] == "cpu"
        assert p["dtype"] == "float32" and p["transformers"] == transformers.__version__
        assert {"torch", "icl_probe", "weight_sha256"} <= set(p)
        assert r["settings"]["seeds"] == [42, 7] and r["settings"]["bootstrap"] == 50
        for name in SCALARS[probe]:
            assert {name, f"{name}_std", f"{name}_ci"} <= set(r["scalars"])
            assert len(r["per_seed"][name]) == 2
        assert "seconds" in r["timing"]
    gd = json.loads(out["gd_readout"].read_text())
    assert len(gd["per_layer"]["mean_err"]) == 4  # L + 1
    ind = json.loads(out["induction"].read_text())
    assert len(ind["per_layer"]["surprisal"]) == 4
    assert np.shape(ind["per_head"]["prefix_matching"]) == (3, 4)  # [L, H]
    sinks = json.loads(out["attention_sinks"].read_text())
    assert len(sinks["per_layer"]["sink_frac"]) == 3 and np.shape(sinks["per_head"]["alpha"]) == (3, 4)


def test_results_are_deterministic(saved_model, small_settings, prompts_path, tmp_path):
    a = probe_checkpoint(str(saved_model), None, tmp_path / "a", small_settings, prompts_path)
    b = probe_checkpoint(str(saved_model), None, tmp_path / "b", small_settings, prompts_path)
    for probe in a:
        ra, rb = json.loads(a[probe].read_text()), json.loads(b[probe].read_text())
        assert json.dumps(_strip(ra), sort_keys=True) == json.dumps(_strip(rb), sort_keys=True)


def test_blocks_that_add_nothing(small_settings, prompts_path, tmp_path):
    model = zero_blocks(make_model("gpt_neox"))
    out = probe_checkpoint("local/zero", None, tmp_path, small_settings, prompts_path,
                           loaded=(model, make_tokenizer()))
    gd = json.loads(out["gd_readout"].read_text())
    assert gd["scalars"]["error_reduction"] == pytest.approx(0.0, abs=1e-6)
    assert np.ptp(gd["per_layer"]["mean_err"]) == pytest.approx(0.0, abs=1e-6)
    ind = json.loads(out["induction"].read_text())
    assert np.ptp(ind["per_layer"]["surprisal"]) == pytest.approx(0.0, abs=1e-5)
    assert ind["scalars"]["total_contraction"] == pytest.approx(1.0, abs=1e-6)
    assert ind["scalars"]["rho2_per_layer"] is None


@pytest.mark.parametrize("model_type", ["olmo2", "gpt2"])
def test_other_architectures_run(model_type, small_settings, prompts_path, tmp_path):
    out = probe_checkpoint(f"local/{model_type}", None, tmp_path, small_settings, prompts_path,
                           loaded=(make_model(model_type), make_tokenizer()))
    r = json.loads(out["gd_readout"].read_text())
    assert np.isfinite(r["scalars"]["mean_err_final"])


def test_enabled_subset(saved_model, small_settings, tmp_path):
    settings = dict(small_settings, enabled=["associative_recall"])
    prompts = make_prompts(str(saved_model), None, tmp_path / "p", settings)
    assert list(prompts) == ["associative_recall"]
    out = probe_checkpoint(str(saved_model), None, tmp_path / "o", settings, tmp_path / "p")
    assert list(out) == ["associative_recall"]


def test_settings_changed_since_prompts(saved_model, small_settings, prompts_path, tmp_path):
    changed = dict(small_settings, seeds=[1])
    with pytest.raises(PromptError, match="other probe settings"):
        probe_checkpoint(str(saved_model), None, tmp_path, changed, prompts_path)


def test_prompt_longer_than_context(small_settings, prompts_path, tmp_path):
    model = make_model("gpt_neox", max_position_embeddings=14)
    with pytest.raises(PromptTooLongError, match=r"induction: a prompt is 16 tokens.* = 14"):
        probe_checkpoint("local/short", None, tmp_path, small_settings, prompts_path,
                         loaded=(model, make_tokenizer()))


def test_make_prompts_checks_context(saved_model, small_settings, tmp_path):
    settings = dict(small_settings, induction={"block_len": 100, "n_sequences": 2})
    with pytest.raises(PromptTooLongError, match="induction: a prompt is 200 tokens.*= 160"):
        make_prompts(str(saved_model), None, tmp_path / "p", settings)


def test_unsupported_architecture(small_settings, prompts_path, tmp_path):
    cfg = transformers.GPTJConfig(vocab_size=314, n_embd=32, n_layer=1, n_head=4, n_positions=160, rotary_dim=4)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(UnsupportedArchitectureError, match="GPTJForCausalLM.*gpt_neox"):
        probe_checkpoint("local/gptj", None, tmp_path, small_settings, prompts_path,
                         loaded=(model, make_tokenizer()))


def test_whole_config_is_accepted(saved_model, small_settings, tmp_path):
    config = {"probes": small_settings, "runtime": {"device": "cpu", "dtype": "float32"}, "stats": {}}
    prompts = make_prompts(str(saved_model), None, tmp_path / "p", config)
    out = probe_checkpoint(str(saved_model), None, tmp_path / "o", config, list(prompts.values()))
    r = json.loads(out["associative_recall"].read_text())
    assert r["settings"]["n_pairs"] == 5 and r["settings"]["seeds"] == [42, 7]


def test_collectors_match_brute_force(tokenizer, small_settings):
    """Final-layer numbers of the batched, hooked passes equal the model's own logits."""
    import torch

    from icl_probe.lens import Lens
    from icl_probe.probes.gd_readout import expected_digit
    from icl_probe.prompts import build_prompts
    from icl_probe.probes.associative_recall import collect as collect_recall
    from icl_probe.probes.gd_readout import collect as collect_gd
    from icl_probe.probes.induction import collect as collect_induction

    model = make_model("gpt_neox")
    prompts = build_prompts(tokenizer, small_settings)
    lens = Lens(model)
    gd = collect_gd(lens, prompts["gd_readout"], batch_size=3, pad_id=1)
    probs = prompts["gd_readout"]["sets"][1]["prompts"]
    with torch.no_grad():
        ref = [expected_digit(model(torch.tensor([p["input_ids"]])).logits[0, -1, prompts["gd_readout"]["digit_ids"]]
                              .numpy()) for p in probs]
    np.testing.assert_allclose(gd[1]["y_hat"][-1], ref, atol=1e-5)
    np.testing.assert_array_equal(gd[1]["y_star"], [p["y_star"] for p in probs])

    m = small_settings["induction"]["block_len"]
    ind = collect_induction(lens, prompts["induction"], batch_size=4, pad_id=1)
    seqs = torch.tensor(prompts["induction"]["sets"][0]["sequences"])
    with torch.no_grad():
        out = model(seqs, output_attentions=False)
    logp = torch.log_softmax(out.logits.float(), -1)
    t = torch.arange(m, 2 * m - 1)
    lp = logp[:, t].gather(-1, seqs[:, t + 1, None])[..., 0]
    np.testing.assert_allclose(ind[0]["final_logp"], lp.mean(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(ind[0]["surprisal"][-1], -lp.mean(-1).numpy(), atol=1e-5)
    acc = (out.logits[:, t].argmax(-1) == seqs[:, t + 1]).float().mean(-1)
    np.testing.assert_allclose(ind[0]["final_correct"], acc.numpy())
    t1 = torch.arange(0, m - 1)
    lf = -logp[:, t1].gather(-1, seqs[:, t1 + 1, None])[..., 0].mean(-1)
    np.testing.assert_allclose(ind[0]["loss_first"], lf.numpy(), atol=1e-5)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attn = model(seqs, output_attentions=True).attentions
    pm = torch.stack([a[:, :, t, t - m + 1].mean(-1) for a in attn]).permute(0, 2, 1)  # [L, H, S]
    np.testing.assert_allclose(ind[0]["prefix"], pm.numpy(), atol=1e-6)

    ar = collect_recall(lens, prompts["associative_recall"], batch_size=4, pad_id=1)
    ps = prompts["associative_recall"]["sets"][1]["prompts"]
    with torch.no_grad():
        lg = model(torch.tensor([p["input_ids"] for p in ps])).logits[:, -1].float()
    tg = torch.tensor([p["target"] for p in ps])
    np.testing.assert_allclose(ar[1]["logp"], torch.log_softmax(lg, -1)[torch.arange(len(ps)), tg].numpy(), atol=1e-5)
    np.testing.assert_array_equal(ar[1]["correct"], (lg.argmax(-1) == tg).float().numpy())


def test_probe_job_on_a_node_without_cuda_says_so_before_loading(saved_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a node without a GPU, on any machine
    from icl_probe.config import ConfigError
    from icl_probe.runner import load_checkpoint

    def no_load(*a, **k):
        raise AssertionError("the weights must not be loaded for a device that cannot run them")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ConfigError, match=r"runtime.device.*cuda:1.*set runtime.device: cpu"):
        load_checkpoint(str(saved_model), None, device="cuda:1")


def test_per_prompt_values_reproduce_the_scalars(small_settings, prompts_path, tmp_path):
    from icl_probe.lens import Lens
    from icl_probe.probes.associative_recall import collect as collect_recall
    from icl_probe.prompts import load_prompts

    model = make_model("gpt_neox")
    out = probe_checkpoint("local/neox", None, tmp_path, small_settings, prompts_path,
                           loaded=(model, make_tokenizer()))
    names = {"gd_readout": {"error_reduction", "sign_agreement", "mean_err_embed", "mean_err_final"},
             "induction": {"induction_acc", "induction_logp"}, "attention_sinks": {"late_early_ratio"},
             "associative_recall": {"ar_acc", "ar_logp"}}
    n_prompts = {"gd_readout": 8, "induction": 6, "attention_sinks": 6, "associative_recall": 6}
    for probe, path in out.items():
        r = json.loads(path.read_text())
        assert set(r["per_prompt"]) == names[probe]
        for name, v in r["per_prompt"].items():
            num = np.array(v["num"], dtype=np.float64)
            assert num.shape == (2, n_prompts[probe])  # [seeds, prompts]
            den = np.ones_like(num) if v["den"] is None else np.array(v["den"], dtype=np.float64)
            assert den.shape == num.shape
            per_seed = num.sum(axis=1) / den.sum(axis=1)
            np.testing.assert_allclose(per_seed, r["per_seed"][name], rtol=1e-12, atol=1e-12)
            assert per_seed.mean() == pytest.approx(r["scalars"][name], rel=1e-12, abs=1e-12)
    # prompt-file order: prompt i of seed s is the i-th prompt of that seed's set in the prompt file
    prompts = load_prompts(prompts_path / "associative_recall.json")
    ref = collect_recall(Lens(model), prompts, batch_size=2, pad_id=1)
    rec = json.loads(out["associative_recall"].read_text())["per_prompt"]["ar_logp"]["num"]
    for s in range(2):
        np.testing.assert_allclose(rec[s], ref[s]["logp"], atol=1e-5)


def test_a_probe_job_logs_its_load_and_progress(saved_model, small_settings, prompts_path, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="icl_probe"):
        probe_checkpoint(str(saved_model), "step128", tmp_path / "o", small_settings, prompts_path)
    lines = [r.getMessage() for r in caplog.records]
    assert any("@step128: loaded in" in ln and "4 probe(s) to run" in ln for ln in lines)
    done = [ln for ln in lines if "probes done" in ln]
    assert [ln.split("; ")[1].split(" (")[0] for ln in done] == [f"{i} of 4 probes done" for i in (1, 2, 3, 4)]
    assert all("probes/s" in ln for ln in done) and "ETA" in done[0] and done[-1].endswith("done)")


def test_progress_line_has_elapsed_rate_and_time_left():
    from icl_probe.progress import progress

    assert progress(10, 40, 5.0, "steps") == "(5 s, 2.0 steps/s, ETA 15 s)"  # 30 steps left at 2/s
    assert progress(30, 120, 60.0, "steps") == "(1 min 0 s, 0.5 steps/s, ETA 3 min 0 s)"
    assert progress(4, 4, 2.0, "probes") == "(2 s, 2.0 probes/s, done)"
    assert progress(0, 4, 0.0, "probes") == "(0 s, 0.0 probes/s, ETA unknown)"


def test_console_progress_is_rate_limited_and_keeps_the_last_line(capsys):
    import io

    from icl_probe.progress import every

    t = iter([0.0, 10.0, 31.0, 40.0, 45.0])
    console = io.StringIO()
    log = every(30.0, console, clock=lambda: next(t))
    lines = ["a (0 s, ETA 1 min)", "b", "c", "d", "e (45 s, 2.0 steps/s, done)"]
    for ln in lines:
        log(ln)
    assert capsys.readouterr().out.splitlines() == lines  # the log file: every line
    assert console.getvalue().splitlines() == ["a (0 s, ETA 1 min)", "c", "e (45 s, 2.0 steps/s, done)"]
