import numpy as np
import pytest

from icl_probe.probes.associative_recall import PROMPT_AXES, SCALARS, per_prompt, recall_metrics
from icl_probe.probes.common import summarise


def test_recall_metrics_by_hand():
    m = recall_metrics(np.log([0.5, 0.25, 1.0, 0.125]), np.array([True, False, True, False]))
    assert m["ar_acc"] == 0.5
    assert m["ar_logp"] == pytest.approx(np.log([0.5, 0.25, 1.0, 0.125]).mean())


def test_per_prompt_means_give_the_scalars():
    rng = np.random.default_rng(2)
    seeds = [{"logp": -rng.uniform(0, 8, size=11), "correct": rng.integers(0, 2, size=11).astype(bool)}
             for _ in range(3)]
    out = summarise(recall_metrics, seeds, PROMPT_AXES, scalars=SCALARS, n_boot=0, per_prompt=per_prompt)
    assert set(out["per_prompt"]) == {"ar_acc", "ar_logp"}
    for s, inputs in enumerate(seeds):
        m = recall_metrics(**inputs)
        for name, (num, den) in per_prompt(**inputs).items():
            assert den is None and num.mean() == pytest.approx(m[name], rel=1e-12)
            assert out["per_prompt"][name]["num"][s] == num.tolist()  # seed order, prompt order
    for name, v in out["per_prompt"].items():
        assert v["den"] is None
        assert np.mean([np.mean(n) for n in v["num"]]) == pytest.approx(out["scalars"][name], rel=1e-12)
