"""Attention sinks: constructed attention arrays and an end-to-end constructed model."""

import numpy as np
import pytest

from conftest import make_model, sink_gpt2
from icl_probe.lens import Lens
from icl_probe.probes.attention_sinks import PROMPT_AXES, SCALARS, first_token_attention, per_prompt, sink_metrics
from icl_probe.probes.common import summarise
from icl_probe.probes.attention_sinks import collect as collect_sinks


def causal_uniform(T):
    a = np.tril(np.ones((T, T)))
    return a / a.sum(-1, keepdims=True)


def test_first_token_attention():
    T = 5
    attn = np.zeros((2, 2, T, T))  # [S, H, T, T]
    attn[:, 0, :, 0] = 1.0  # head 0: all on the first token
    attn[:, 1] = causal_uniform(T)  # head 1: uniform over the prefix
    alpha = first_token_attention(attn)  # [H, S]
    np.testing.assert_allclose(alpha[0], [1.0, 1.0])
    np.testing.assert_allclose(alpha[1], np.mean([1 / (t + 1) for t in range(1, T)]))


def test_sink_metrics_by_hand():
    alpha = np.array([[[0.1, 0.3], [0.0, 0.2]],   # layer 1: heads 0.2, 0.1
                      [[0.5, 0.5], [0.2, 0.2]],   # layer 2: 0.5, 0.2
                      [[0.9, 0.7], [0.6, 0.6]]])  # layer 3: 0.8, 0.6   [L=3, H=2, S=2]
    m = sink_metrics(alpha, eps=0.3)
    np.testing.assert_allclose(m["alpha"], [[0.2, 0.1], [0.5, 0.2], [0.8, 0.6]])
    np.testing.assert_allclose(m["sink_frac"], [0.15, 0.35, 0.7])
    assert m["sink_rate_eps"] == pytest.approx(100 * 3 / 6)
    assert m["late_early_ratio"] == pytest.approx(0.7 / 0.15)  # ceil(3/3) = 1 layer each


def test_late_early_uses_ceil_third():
    sink_frac = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # L = 5 -> 2 layers each
    alpha = np.repeat(sink_frac[:, None, None], 3, axis=1)
    m = sink_metrics(alpha, eps=10)
    assert m["late_early_ratio"] == pytest.approx(4.5 / 1.5)
    assert m["sink_rate_eps"] == 0.0


def test_constructed_sink_layer_end_to_end():
    model = sink_gpt2(layer=0)
    seqs = [[20 + (7 * i + 3 * t) % 200 for t in range(12)] for i in range(4)]
    (seed,) = collect_sinks(Lens(model), {"sets": [{"seed": 0, "sequences": seqs}]}, batch_size=3, pad_id=1)
    m = sink_metrics(seed["alpha"])
    assert m["sink_frac"][0] == pytest.approx(1.0, abs=1e-4)
    assert m["sink_frac"][1] < 0.9
    assert m["alpha"].shape == (3, 4)


def test_collector_matches_metric_function():
    import torch

    model = make_model("gpt_neox")
    seqs = [[20 + (5 * i + t) % 200 for t in range(10)] for i in range(3)]
    (seed,) = collect_sinks(Lens(model), {"sets": [{"seed": 0, "sequences": seqs}]}, batch_size=2, pad_id=1)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attn = model(torch.tensor(seqs), output_attentions=True).attentions
    ref = np.stack([first_token_attention(a.numpy()) for a in attn])
    np.testing.assert_allclose(seed["alpha"], ref, atol=1e-6)


def test_unconstructed_model_is_not_a_sink():
    seqs = [[20 + t for t in range(12)]]
    (seed,) = collect_sinks(Lens(make_model("gpt2")), {"sets": [{"seed": 0, "sequences": seqs}]},
                            batch_size=3, pad_id=1)
    assert sink_metrics(seed["alpha"])["sink_frac"][0] < 0.9


@pytest.mark.parametrize("n_layers", [1, 3, 5, 7])
def test_per_prompt_late_early_ratio(n_layers):
    rng = np.random.default_rng(n_layers)
    seeds = [{"alpha": rng.uniform(0, 1, size=(n_layers, 4, 6))} for _ in range(3)]
    for inputs in seeds:
        num, den = per_prompt(**inputs, eps=0.3)["late_early_ratio"]
        assert num.shape == den.shape == (6,)
        assert num.sum() / den.sum() == pytest.approx(sink_metrics(**inputs)["late_early_ratio"], rel=1e-12)
    out = summarise(sink_metrics, seeds, PROMPT_AXES, scalars=SCALARS, n_boot=0, fixed={"eps": 0.3},
                    per_prompt=per_prompt)
    v = out["per_prompt"]["late_early_ratio"]
    per_seed = [np.sum(n) / np.sum(d) for n, d in zip(v["num"], v["den"])]
    np.testing.assert_allclose(per_seed, out["per_seed"]["late_early_ratio"], rtol=1e-12)
    assert np.mean(per_seed) == pytest.approx(out["scalars"]["late_early_ratio"], rel=1e-12)


def test_per_prompt_hand_example():
    alpha = np.array([[[0.1, 0.3], [0.0, 0.2]], [[0.5, 0.5], [0.2, 0.2]], [[0.9, 0.7], [0.6, 0.6]]])
    num, den = per_prompt(alpha)["late_early_ratio"]
    np.testing.assert_allclose(num, [0.75, 0.65])  # last layer, mean over heads
    np.testing.assert_allclose(den, [0.05, 0.25])  # first layer
