import json

import pytest

from conftest import DIGITS, EOS, UNK
import numpy as np

from icl_probe.probes.associative_recall import recall_prompts
from icl_probe.probes.attention_sinks import sink_sequences
from icl_probe.probes.base import ProbeDefinitionError
from icl_probe.probes.gd_readout import digit_answers, digit_token_ids, gd_problems
from icl_probe.probes.induction import induction_sequences
from icl_probe.prompts import (
    DigitTokenError, PromptError, PromptTooLongError, build_prompts, check_context, load_prompts,
    ordinary_token_ids, prompts_sha256, write_prompts,
)


def rng(seed):
    return np.random.default_rng(seed)


def test_ordinary_ids_are_plain_words(tokenizer):
    ids = ordinary_token_ids(tokenizer)
    assert ids == sorted(ids)
    texts = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    assert UNK not in texts and EOS not in texts and "->" not in texts and "," not in texts
    assert not set(ids) & set(tokenizer.all_special_ids)
    assert len(ids) == 310  # 10 digits + 300 words
    # below id 20: the digits (2..11) and the first words (14..19); 12, 13 are "->" and ","
    assert ordinary_token_ids(tokenizer, vocab_limit=20) == list(range(2, 12)) + list(range(14, 20))


def test_digit_ids(tokenizer, small_settings):
    ids, strings = digit_token_ids(tokenizer, small_settings["gd_readout"])
    assert strings == [f" {d}" for d in range(10)]
    assert [tokenizer.convert_ids_to_tokens(i) for i in ids] == DIGITS


def test_digit_not_one_token_names_the_string(tokenizer):
    gd = {"pair_format": "{x} -> {y} ,", "query_format": "{x} ->"}
    with pytest.raises(DigitTokenError, match=r"' 0 ,'"):
        digit_token_ids(tokenizer, gd)


def test_digits_mapping_to_unknown_are_an_error(tokenizer):
    gd = {"pair_format": "{x} -> {y}{y}", "query_format": "{x} ->"}  # " 00" is <unk> for all d
    with pytest.raises(DigitTokenError, match="ten distinct"):
        digit_token_ids(tokenizer, gd)


def test_format_mismatch():
    with pytest.raises(PromptError, match="does not start with"):
        digit_answers({"pair_format": "{y} <- {x}", "query_format": "{x} ->"})


def test_gd_problems_follow_the_spec():
    gd = {"k": 5, "n_prompts": 200}
    probs = gd_problems(rng(42), gd)
    assert probs == gd_problems(rng(42), gd) and probs != gd_problems(rng(7), gd)
    assert {p["a"] for p in probs} == {1, 2}
    for p in probs:
        assert 0 <= p["b"] <= 9 - 4 * p["a"]
        assert len(p["x"]) == 5 and all(0 <= x <= 4 for x in p["x"] + [p["x_q"]])
        assert p["y"] == [p["a"] * x + p["b"] for x in p["x"]]
        assert p["y_star"] == p["a"] * p["x_q"] + p["b"] and 0 <= p["y_star"] <= 9
    p = probs[0]
    assert p["text"] == "\n".join([f"{x} -> {y}" for x, y in zip(p["x"], p["y"])] + [f"{p['x_q']} ->"])


def test_induction_sequences(tokenizer):
    pool = ordinary_token_ids(tokenizer)
    seqs = induction_sequences(rng(3), pool, 8, 5)
    assert len(seqs) == 5
    for s in seqs:
        assert len(s) == 16 and s[:8] == s[8:] and len(set(s[:8])) == 8 and set(s) <= set(pool)
    with pytest.raises(PromptError, match="block_len"):
        induction_sequences(rng(3), pool[:4], 8, 1)


def test_sink_sequences(tokenizer):
    pool = ordinary_token_ids(tokenizer)
    seqs = sink_sequences(rng(1), pool, 12, 4)
    assert [len(s) for s in seqs] == [12] * 4 and all(set(s) <= set(pool) for s in seqs)
    pat = sink_sequences(rng(1), pool, 7, 2, "pattern")
    for s in pat:
        assert s[0] == s[2] == s[4] == s[6] and s[1] == s[3] == s[5] and s[0] != s[1]
    with pytest.raises(PromptError, match="prompt_set"):
        sink_sequences(rng(1), pool, 7, 2, "other")


def test_recall_prompts(tokenizer):
    pool = ordinary_token_ids(tokenizer)
    out = recall_prompts(rng(5), pool, 128, 20, 10)
    assert len(out["items"]) == 128 == len(set(out["items"]))
    for p in out["prompts"]:
        ids = p["input_ids"]
        assert len(ids) == 41
        keys, values = ids[0:40:2], ids[1:40:2]
        assert len(set(keys + values)) == 40 and set(ids) <= set(out["items"])
        assert ids[-1] in keys and p["target"] == values[keys.index(ids[-1])]
    with pytest.raises(PromptError, match="distinct items"):
        recall_prompts(rng(5), pool, 30, 20, 1)


def test_build_is_deterministic_and_hashed(tokenizer, small_settings, tmp_path):
    a = build_prompts(tokenizer, small_settings, context_length=160, source={"repo_id": "x", "revision": "a"})
    b = build_prompts(tokenizer, small_settings, context_length=160, source={"repo_id": "y", "revision": "b"})
    assert list(a) == small_settings["enabled"]  # one prompt file per probe
    for name in a:
        assert a[name]["probe"] == name
        assert a[name]["prompts_sha256"] == b[name]["prompts_sha256"] == prompts_sha256(a[name])
    other = dict(small_settings, seeds=[1, 2])
    assert build_prompts(tokenizer, other)["induction"]["prompts_sha256"] != a["induction"]["prompts_sha256"]
    # one probe's settings change only its own prompt file
    changed = build_prompts(tokenizer, dict(small_settings, induction={"block_len": 7, "n_sequences": 6}))
    assert [n for n in a if changed[n]["prompts_sha256"] != a[n]["prompts_sha256"]] == ["induction"]
    assert [s["seed"] for s in a["gd_readout"]["sets"]] == [42, 7]
    p = a["gd_readout"]["sets"][0]["prompts"][0]
    assert p["input_ids"] == tokenizer(p["text"], add_special_tokens=False)["input_ids"]
    assert len(a["induction"]["sets"][1]["sequences"]) == 6
    assert a["induction"]["tokenizer"]["pad_id"] == tokenizer.eos_token_id
    path = write_prompts(tmp_path / "prompts.json", a["gd_readout"])
    back = load_prompts(path)
    assert back == a["gd_readout"]
    text = path.read_text()
    assert write_prompts(tmp_path / "again.json", back).read_text() == text


def test_tampered_prompt_file(tokenizer, small_settings, tmp_path):
    path = write_prompts(tmp_path / "p.json", build_prompts(tokenizer, small_settings)["induction"])
    data = json.loads(path.read_text())
    data["sets"][0]["sequences"][0][0] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(PromptError, match="does not match"):
        load_prompts(path)


def test_truncated_prompt_file_is_named(tokenizer, small_settings, tmp_path):
    path = write_prompts(tmp_path / "p.json", build_prompts(tokenizer, small_settings)["gd_readout"])
    text = path.read_text()
    path.write_text(text[: len(text) // 3])
    with pytest.raises(PromptError, match="p.json is not valid JSON.*delete it and rerun"):
        load_prompts(path)


def test_prompt_too_long_names_probe_length_limit(tokenizer, small_settings):
    prompts = build_prompts(tokenizer, small_settings)
    check_context(prompts, 16)  # induction 2m = 16, sinks 12, recall 11, gd 3*3+2 = 11
    with pytest.raises(PromptTooLongError, match=r"induction: a prompt is 16 tokens.*max_position_embeddings = 15"):
        check_context(prompts, 15)
    with pytest.raises(PromptTooLongError, match="gd_readout: a prompt is 11 tokens"):
        build_prompts(tokenizer, small_settings, context_length=10)


def test_only_enabled_probes(tokenizer, small_settings):
    prompts = build_prompts(tokenizer, dict(small_settings, enabled=["associative_recall"]))
    assert "associative_recall" in prompts and "gd_readout" not in prompts and "induction" not in prompts
    with pytest.raises(ProbeDefinitionError, match="unknown probe 'nope'; known probes: gd_readout"):
        build_prompts(tokenizer, dict(small_settings, enabled=["nope"]))
