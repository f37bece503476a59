"""Deterministic synthetic training corpus for the mini-suite.

A stream of documents, each ended by ``<|endoftext|>``, cut into rows of
``seq_len`` token ids (rows may begin or end inside a document, as in ordinary
LM packing). Document kinds:

(a) ``gd``: in-context linear regression in the GD-readout prompt format
    (``"{x} -> {y}"`` pairs, one per line): y = a*x + b, x in 0..4, a in {1, 2},
    b uniform in 0 .. 9 - 4a, k pairs with k uniform in 2..12.
(b) ``repeat``: a block of m random ordinary tokens (m uniform in 8..32)
    repeated twice (sometimes three times), as in the induction probe.
(b') ``skip``: skip-bigram text over the ordinary tokens, w[t+1] = skip[w[t-1]] for
    a fixed permutation ``skip`` (the n-gram structure that grows previous-token
    heads, the first half of an induction circuit).
(b'') ``trigram``: trigram text over 16 filler words, w[t+1] = trigram[w[t-1], w[t]]
    for a fixed random table (needs the previous word before the last layer).
(c) ``recall``: 20 distinct key -> value pairs ``k1 v1 ... k20 v20`` then a query
    key and its value, as in the associative-recall probe.
(d) ``filler``: 8..40 filler words, drawn from a skewed unigram distribution.

Everything is a function of a ``numpy.random.Generator``: the same seed gives
the same ids.
"""

from __future__ import annotations

import numpy as np

from .tokenizer import ARROW, DIGITS, EOS, FILLER, NEWLINE, vocabulary

KINDS = ("gd", "repeat", "skip", "trigram", "recall", "filler")
DEFAULT_MIX = {"repeat": 0.6, "gd": 0.2, "filler": 0.1, "recall": 0.1}


class Vocab:
    """Token ids the corpus needs, looked up once from :func:`vocabulary`."""

    def __init__(self) -> None:
        vocab = vocabulary()
        index = {t: i for i, t in enumerate(vocab)}
        self.size = len(vocab)
        self.eos = index[EOS]
        self.digits = np.array([index[d] for d in DIGITS])
        self.arrow = index[ARROW]
        self.newline = index[NEWLINE]
        self.filler = np.array([index[w] for w in FILLER])
        # ordinary = every non-special token: what the probes draw random tokens from
        self.ordinary = np.array([i for i in range(self.size) if i != self.eos])
        # the skip-bigram language: w[t+1] = skip[w[t-1]], a fixed permutation of the
        # ordinary tokens (the same for every seed: it is part of the "language")
        order = np.random.default_rng(20240).permutation(len(self.ordinary))
        self.skip_words = self.ordinary
        self.skip_next = dict(zip(self.ordinary.tolist(), self.ordinary[order].tolist()))
        # the trigram language: w[t+1] = trigram[w[t-1], w[t]] over the first 16 filler words
        trng = np.random.default_rng(20241)
        self.tri_words = self.filler[:16]
        self.tri_next = trng.integers(0, 16, size=(16, 16))
        w = 1.0 / np.arange(1, len(self.filler) + 1)  # Zipf-like filler frequencies
        self.filler_cdf = np.cumsum(w / w.sum())


def gd_document(rng: np.random.Generator, v: Vocab, k: int | None = None) -> list[int]:
    """k lines ``x -> y`` of one task y = a*x + b (newline-separated, no trailing one)."""
    if k is None:
        k = int(rng.integers(2, 13))
    a = int(rng.integers(1, 3))
    b = int(rng.integers(0, 9 - 4 * a + 1))
    ids: list[int] = []
    for i in range(k):
        x = int(rng.integers(0, 5))
        if i:
            ids.append(v.newline)
        ids += [int(v.digits[x]), v.arrow, int(v.digits[a * x + b])]
    return ids


def repeat_document(rng: np.random.Generator, v: Vocab, m: int | None = None) -> list[int]:
    """A block of m random ordinary tokens, repeated (2 copies, 3 one time in 4)."""
    if m is None:
        m = int(rng.integers(8, 33))
    block = rng.choice(v.ordinary, size=m).tolist()
    copies = 3 if rng.random() < 0.25 else 2
    return block * copies


def skip_document(rng: np.random.Generator, v: Vocab) -> list[int]:
    """Skip-bigram text: two random words, then w[t+1] = skip[w[t-1]] (16..40 words).

    Predicting it needs a previous-token head, the first half of an induction
    circuit (as n-gram statistics do in natural text).
    """
    n = int(rng.integers(16, 41))
    ids = rng.choice(v.skip_words, size=2).tolist()
    while len(ids) < n:
        ids.append(v.skip_next[ids[-2]])
    return ids


def trigram_document(rng: np.random.Generator, v: Vocab) -> list[int]:
    """Trigram text: w[t+1] = trigram[w[t-1], w[t]] over 16 filler words (16..40 words).

    The next word depends on the current and the previous one together, so the
    previous word must reach the current position before the last layer: a
    previous-token head in an early layer, the first half of an induction circuit.
    """
    n = int(rng.integers(16, 41))
    idx = rng.integers(0, 16, size=2).tolist()
    while len(idx) < n:
        idx.append(int(v.tri_next[idx[-2], idx[-1]]))
    return v.tri_words[idx].tolist()


def recall_document(rng: np.random.Generator, v: Vocab, n_pairs: int = 20) -> list[int]:
    """``k1 v1 ... kn vn kq vq`` with distinct keys and values (ordinary tokens)."""
    items = rng.choice(v.ordinary, size=2 * n_pairs, replace=False)
    keys, values = items[:n_pairs], items[n_pairs:]
    q = int(rng.integers(n_pairs))
    ids = np.stack([keys, values], axis=1).reshape(-1).tolist()
    return ids + [int(keys[q]), int(values[q])]


def filler_document(rng: np.random.Generator, v: Vocab) -> list[int]:
    n = int(rng.integers(8, 41))
    idx = np.minimum(np.searchsorted(v.filler_cdf, rng.random(n)), len(v.filler) - 1)
    return v.filler[idx].tolist()


_MAKERS = {"gd": gd_document, "repeat": repeat_document,
           "skip": skip_document, "trigram": trigram_document, "recall": recall_document,
           "filler": filler_document}


def document(rng: np.random.Generator, v: Vocab, mix: dict[str, float] = DEFAULT_MIX) -> list[int]:
    """One document of a kind drawn with probabilities ``mix`` (kind -> weight)."""
    kinds = list(mix)
    cdf = np.cumsum([mix[k] for k in kinds])
    i = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(kinds) - 1)
    return _MAKERS[kinds[i]](rng, v)


def packed_rows(rng: np.random.Generator, n_rows: int, seq_len: int,
                mix: dict[str, float] = DEFAULT_MIX) -> np.ndarray:
    """``n_rows`` rows of ``seq_len`` token ids cut from one EOS-separated stream.

    As in ordinary LM packing, a row may begin or end inside a document.
    Returns int64 array of shape (n_rows, seq_len).
    """
    v = Vocab()
    need = n_rows * seq_len
    stream: list[int] = []
    while len(stream) < need:
        stream += document(rng, v, mix) + [v.eos]
    return np.array(stream[:need], dtype=np.int64).reshape(n_rows, seq_len)


def corpus(seed: int, n_rows: int, seq_len: int,
           mix: dict[str, float] = DEFAULT_MIX) -> np.ndarray:
    """The training corpus for ``seed``: (n_rows, seq_len) int64 token ids."""
    return packed_rows(np.random.default_rng([seed, 0]), n_rows, seq_len, mix)


def heldout_induction(seed: int, n_sequences: int = 32, block_len: int = 32) -> np.ndarray:
    """Held-out induction sequences: a random ordinary block repeated once.

    Drawn from a generator stream disjoint from :func:`corpus`'s.
    Returns int64 array of shape (n_sequences, 2 * block_len).
    """
    rng = np.random.default_rng([seed, 1])
    v = Vocab()
    blocks = rng.choice(v.ordinary, size=(n_sequences, block_len))
    return np.concatenate([blocks, blocks], axis=1).astype(np.int64)


def heldout_gd(seed: int, n_prompts: int = 64, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Held-out GD-readout prompts ``k`` pairs then ``x_q ->``, and the answers y*.

    Returns (ids, y_star): int64 (n_prompts, 4k + 2) token ids (no EOS/BOS in front, as the probe's prompts) and int64 (n_prompts,).
    """
    rng = np.random.default_rng([seed, 2])
    v = Vocab()
    rows, ys = [], []
    for _ in range(n_prompts):
        ids = gd_document(rng, v, k=k + 1)  # the last pair is the query and its answer
        rows.append(ids[:-1])
        ys.append(int(np.nonzero(v.digits == ids[-1])[0][0]))
    return np.array(rows, dtype=np.int64), np.array(ys, dtype=np.int64)
