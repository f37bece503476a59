import pytest
import torch

from conftest import make_model, zero_blocks
from icl_probe.lens import Lens, pad_batch

SEQS = [[3, 4, 5, 6, 7, 8, 20, 21], [9, 10, 11, 30, 31], [40, 41, 42, 43, 44, 45, 46]]
ALL = [list(range(5))] * 3  # first five positions of every sequence


def _hidden(lens, seqs, reads, **kw):
    caps = list(lens.run(seqs, reads, layers=range(lens.n_layers + 1), **kw))
    return {l: torch.cat([c.hidden[l] for c in caps]) for l in range(lens.n_layers + 1)}


@pytest.mark.parametrize("model_type", ["gpt_neox", "olmo2", "gpt2", "llama"])
def test_lens_of_last_layer_equals_model_logits(model_type):
    model = make_model(model_type)
    lens = Lens(model)
    reads = [list(range(len(s))) for s in SEQS]
    for i, s in enumerate(SEQS):
        h = _hidden(lens, [s], [reads[i]])
        with torch.no_grad():
            ref = model(torch.tensor([s])).logits.float()
        got = lens.logits(h[lens.n_layers])
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", ["gpt_neox", "olmo2", "gpt2"])
def test_hidden_states_are_prenorm(model_type):
    """h_L differs from HF's hidden_states[-1] (already normed); h_l < L agree with it."""
    model = make_model(model_type)
    lens = Lens(model)
    s = SEQS[0]
    h = _hidden(lens, [s], [list(range(len(s)))])
    with torch.no_grad():
        hf = model(torch.tensor([s]), output_hidden_states=True).hidden_states
    for l in range(lens.n_layers):
        torch.testing.assert_close(h[l], hf[l], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens.normed(h[lens.n_layers]), hf[-1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(h[lens.n_layers], hf[-1], atol=1e-3)


def test_h0_is_embedding_output():
    model = make_model("gpt2")
    lens = Lens(model)
    s = SEQS[1]
    h = _hidden(lens, [s], [list(range(len(s)))])
    with torch.no_grad():
        emb = model.transformer.wte(torch.tensor([s])) + model.transformer.wpe(torch.arange(len(s)))[None]
    torch.testing.assert_close(h[0], emb)


@pytest.mark.parametrize("model_type", ["gpt_neox", "olmo2", "gpt2"])
def test_padding_sides_agree_with_unpadded(model_type):
    model = make_model(model_type)
    lens = Lens(model)
    single = {l: torch.cat([_hidden(lens, [s], [r])[l] for s, r in zip(SEQS, ALL)]) for l in range(4)}
    for side in ("right", "left"):
        batched = _hidden(lens, SEQS, ALL, batch_size=3, pad_id=1, padding_side=side)
        for l in range(4):
            torch.testing.assert_close(batched[l], single[l], atol=1e-5, rtol=1e-5)


def test_pad_batch():
    ids, mask, pos, off = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert off.tolist() == [0, 2]
    ids, mask, pos, off = pad_batch([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and off.tolist() == [0, 0] and pos[1, 0] == 0
    with pytest.raises(ValueError, match="padding side"):
        pad_batch([[1]], 0, side="middle")


def test_row_logits_and_target_logprob():
    model = make_model("gpt_neox")
    lens = Lens(model)
    h = _hidden(lens, SEQS[:1], [[0, 1, 2]])[3]  # [1, 3, d]
    full = lens.logits(h)
    ids = [2, 3, 4, 5]
    torch.testing.assert_close(lens.row_logits(h, ids), full[..., ids])
    targets = torch.tensor([[7, 8, 9]])
    logp, correct = lens.target_logprob(h, targets)
    ref = torch.log_softmax(full, -1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=0)
    assert correct.tolist() == (full.argmax(-1) == targets).tolist()


def test_attentions_only_when_asked_and_impl_restored():
    model = make_model("gpt_neox")
    lens = Lens(model)
    before = model.config._attn_implementation
    (cap,) = list(lens.run(SEQS[:1], None, attentions=False))
    assert cap.attentions is None and cap.hidden == {}
    (cap,) = list(lens.run(SEQS[:1], None, attentions=True))
    assert len(cap.attentions) == 3
    a = cap.attentions[0]
    assert a.shape == (1, 4, 8, 8)
    torch.testing.assert_close(a.sum(-1), torch.ones(1, 4, 8))
    assert torch.all(a.triu(1) == 0)  # causal
    assert model.config._attn_implementation == before
    n_hooks = [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in lens.parts.blocks]
    list(lens.run(SEQS[:1], [[0]], layers=[0, 1, 3]))
    assert [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in lens.parts.blocks] == n_hooks


@pytest.mark.parametrize("model_type", ["gpt_neox", "olmo2", "gpt2"])
def test_blocks_that_add_nothing_leave_the_stream_unchanged(model_type):
    lens = Lens(zero_blocks(make_model(model_type)))
    h = _hidden(lens, SEQS[:1], [[0, 3, 7]])
    for l in range(1, 4):
        torch.testing.assert_close(h[l], h[0])


def test_bad_layers():
    lens = Lens(make_model("gpt2"))
    with pytest.raises(ValueError, match="layers must be in 0..3"):
        list(lens.run(SEQS[:1], [[0]], layers=[4]))
