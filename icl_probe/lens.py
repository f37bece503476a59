"""The logit lens: residual stream capture and ``lens(h) = head(final_norm(h))``.

h_l (l = 0..L) is the residual stream *before* the final norm: h_0 is the input of
the first block (the embedding output, position embeddings included where the
model adds them), h_l the output of block l. They are captured with hooks on the
blocks, not taken from ``hidden_states`` (whose last entry is already normalised).
Only the positions a probe reads are kept and pushed through the lens.

Batches are padded here (right padding by default; left padding is supported with
position ids from the attention mask), so the tokenizer's padding side never
matters. Attention probabilities are requested only when asked for, under eager
attention switched on for that pass alone (SDPA returns none).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from icl_probe.arch import ModelParts, model_parts


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right", device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad token-id sequences into one batch.

    Returns ``input_ids [B, T]``, ``attention_mask [B, T]``, ``position_ids [B, T]``
    (0.. along the real tokens whatever the side) and ``offsets [B]``, the index of
    each sequence's first real token (0 for right padding).
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    lengths = [len(s) for s in seqs]
    t = max(lengths)
    ids = torch.full((len(seqs), t), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    offsets = torch.zeros(len(seqs), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s)
        start = 0 if side == "right" else t - n
        ids[i, start : start + n] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, start : start + n] = 1
        offsets[i] = start
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device), offsets.to(device)


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Switch ``model`` to eager attention (which returns probabilities) for a block."""
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@dataclass
class BatchCapture:
    """What one forward pass returns to a probe.

    hidden: ``{layer: [B, R, d]}`` residual stream at the read positions (model dtype).
    attentions: ``[L] x [B, H, T, T]`` attention probabilities, or None.
    offsets: ``[B]`` index of each sequence's first real token in the padded batch.
    """

    hidden: dict[int, torch.Tensor]
    attentions: tuple[torch.Tensor, ...] | None
    offsets: torch.Tensor


class Lens:
    """Logit lens over one loaded causal LM.

    ``lens(h) = head(final_norm(h))`` with the model's own final norm and head; the
    head can be restricted to a few vocabulary rows (:meth:`row_logits`).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.parts: ModelParts = model_parts(model)
        self.n_layers = self.parts.n_layers
        self.weight = self.parts.head.weight  # [V, d]
        self.bias = getattr(self.parts.head, "bias", None)

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @torch.inference_mode()
    def normed(self, h: torch.Tensor) -> torch.Tensor:
        """final_norm(h), ``[..., d] -> [..., d]``."""
        return self.parts.final_norm(h)

    @torch.inference_mode()
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary lens logits in fp32, ``[..., d] -> [..., V]``."""
        return self.parts.head(self.normed(h)).float()

    @torch.inference_mode()
    def row_logits(self, h: torch.Tensor, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Lens logits of the vocabulary rows ``ids`` only, fp32, ``[..., d] -> [..., len(ids)]``."""
        idx = torch.as_tensor(ids, dtype=torch.long, device=self.weight.device)
        b = None if self.bias is None else self.bias[idx]
        return F.linear(self.normed(h), self.weight[idx], b).float()

    @torch.inference_mode()
    def target_logprob(self, h: torch.Tensor, targets: torch.Tensor, with_correct: bool = True
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probability of ``targets`` and whether each is the top logit.

        ``h [..., d]``, ``targets [...]`` (long) -> ``logp [...]`` (fp32, normalised by
        the full-vocabulary logsumexp), ``correct [...]`` (bool; None unless
        ``with_correct``). A fused cross-entropy computes the logsumexp (faster on CPU
        than ``torch.logsumexp``); correct means the target's logit equals the maximum.
        """
        logits = self.logits(h)
        tgt = targets.to(logits.device)
        flat = logits.reshape(-1, logits.shape[-1])
        logp = -F.cross_entropy(flat, tgt.reshape(-1), reduction="none").reshape(tgt.shape)
        correct = None
        if with_correct:
            top = flat.amax(dim=-1)
            correct = (flat.gather(-1, tgt.reshape(-1, 1))[:, 0] >= top).reshape(tgt.shape)
        return logp, correct

    def run(
        self,
        seqs: Sequence[Sequence[int]],
        read_positions: Sequence[Sequence[int]] | None,
        *,
        layers: Sequence[int] = (),
        attentions: bool = False,
        batch_size: int = 16,
        pad_id: int = 0,
        padding_side: str = "right",
    ) -> Iterator[BatchCapture]:
        """Forward ``seqs`` in batches, capturing h_l at ``read_positions`` for ``layers``.

        ``read_positions[i]`` are indices into the unpadded ``seqs[i]``; every sequence
        must list the same number R of them. ``layers`` are in 0..L (0 = embedding
        output). With ``attentions=True`` the pass runs under eager attention and
        returns the probabilities of every layer. Yields one :class:`BatchCapture`
        per batch, in order.
        """
        layers = sorted(set(int(l) for l in layers))
        if layers and (layers[0] < 0 or layers[-1] > self.n_layers):
            raise ValueError(f"layers must be in 0..{self.n_layers}, got {layers}")
        store: dict[int, torch.Tensor] = {}
        state: dict[str, torch.Tensor] = {}

        def keep(layer: int, h: torch.Tensor) -> None:
            idx = state["idx"]
            rows = torch.arange(h.shape[0], device=h.device).unsqueeze(-1)
            store[layer] = h[rows, idx]

        handles = []
        blocks = self.parts.blocks
        if 0 in layers:

            def pre_hook(module, args, kwargs):
                h = args[0] if args else kwargs["hidden_states"]
                keep(0, h)

            handles.append(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        for layer in layers:
            if layer == 0:
                continue

            def hook(module, args, out, layer=layer):
                keep(layer, out[0] if isinstance(out, (tuple, list)) else out)

            handles.append(blocks[layer - 1].register_forward_hook(hook))

        ctx = eager_attention(self.model) if attentions else contextlib.nullcontext()
        try:
            with ctx, torch.inference_mode():
                for start in range(0, len(seqs), batch_size):
                    chunk = seqs[start : start + batch_size]
                    ids, mask, pos, offsets = pad_batch(chunk, pad_id, padding_side, self.device)
                    if read_positions is not None:
                        rp = torch.as_tensor(
                            [list(r) for r in read_positions[start : start + batch_size]],
                            dtype=torch.long, device=self.device,
                        )
                        state["idx"] = rp + offsets.unsqueeze(-1)
                    elif layers:
                        raise ValueError("read_positions are needed to capture hidden states")
                    store.clear()
                    out = self.parts.backbone(
                        input_ids=ids, attention_mask=mask, position_ids=pos,
                        output_attentions=attentions, use_cache=False,
                    )
                    yield BatchCapture(
                        hidden=dict(store),
                        attentions=tuple(out.attentions) if attentions else None,
                        offsets=offsets,
                    )
        finally:
            for h in handles:
                h.remove()
