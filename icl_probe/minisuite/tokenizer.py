"""The mini-suite's tokenizer: a real word-level ``tokenizers`` tokenizer.

Pythia-like conventions: one special token ``<|endoftext|>`` (bos = eos = unk),
no pad token, no BOS added on encode. Every digit "0".."9" is one token, so the
GD-readout prompts (``"3 -> 7\\n1 -> 5\\n4 ->"``) encode as
``3 -> 7 NL 1 -> 5 NL 4 ->``: spaces separate words and are dropped, the newline
is a token of its own.

Vocabulary (ids in this order):
  0        ``<|endoftext|>`` (special)
  1..10    "0".."9"
  11       "->"
  12       "\\n"
  13..268  item tokens "t000".."t255" (induction, sinks, recall)
  269..    filler words
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
DIGITS = [str(d) for d in range(10)]
ARROW = "->"
NEWLINE = "\n"
N_ITEMS = 256
ITEMS = [f"t{i:03d}" for i in range(N_ITEMS)]
FILLER = (
    "the a an of and to in is was it that for on with as at by from this be are "
    "or his her they we you he she not but had have one all there their which "
    "when what so up out if about who into then than some more time"
).split()


def vocabulary() -> list[str]:
    """All tokens, index = id."""
    vocab = [EOS, *DIGITS, ARROW, NEWLINE, *ITEMS, *FILLER]
    assert len(vocab) == len(set(vocab))
    return vocab


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :func:`vocabulary`; ``pad_token`` unset (as Pythia)."""
    vocab = {tok: i for i, tok in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # drop runs of whitespace other than the newline ...
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            # ... and keep every newline as a word of its own
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.add_special_tokens([EOS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        model_max_length=128,
        clean_up_tokenization_spaces=False,
    )
    return fast
