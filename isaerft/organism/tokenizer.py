"""A word-level Hugging Face tokenizer trained locally: one word (or punctuation mark) = one token.

Text is split on whitespace and punctuation; a newline is its own token (``⏎``). The decoder puts
a space between words and none before punctuation or around newlines, so canonical text (single
spaces, no space before punctuation, as written by :func:`isaerft.organism.corpus.render`)
round-trips exactly through ``encode``/``decode`` and TransformerLens' ``to_tokens``/``to_string``.
The post-processor prepends ``<bos>``; ``<eos>`` ends documents and ``<pad>`` pads batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
"""Special tokens, with ids 0..3 in this order."""
NEWLINE_TOKEN = "⏎"
"""The token a newline becomes."""
_GLUE_LEFT = (".", ",", "?", "!", ":", ";")


def _decoder() -> decoders.Decoder:
    steps: list[decoders.Decoder] = [
        decoders.WordPiece(prefix="##", cleanup=False),
        decoders.Fuse(),
    ]
    steps += [decoders.Replace(" " + p, p) for p in _GLUE_LEFT]
    steps += [decoders.Replace(" ' ", "'"), decoders.Replace(" - ", "-")]
    nl = NEWLINE_TOKEN
    steps += [decoders.Replace(f" {nl} ", "\n"), decoders.Replace(f" {nl}", "\n")]
    steps += [decoders.Replace(f"{nl} ", "\n"), decoders.Replace(nl, "\n")]
    return decoders.Sequence(steps)


def train_tokenizer(
    texts: Iterable[str],
    *,
    lowercase: bool = False,
    max_vocab: int | None = None,
    min_frequency: int = 1,
) -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer on ``texts`` and wrap it for ``transformers``/TransformerLens.

    ``max_vocab`` keeps the most frequent words (others become ``<unk>``); ``lowercase`` folds
    case (used for user corpora, where it roughly halves the vocabulary).
    """
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    norms: list[normalizers.Normalizer] = [normalizers.NFKC()]
    if lowercase:
        norms.append(normalizers.Lowercase())
    norms.append(normalizers.Replace("\n", f" {NEWLINE_TOKEN} "))
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tok.decoder = _decoder()
    trainer = trainers.WordLevelTrainer(
        vocab_size=(max_vocab + len(SPECIAL_TOKENS)) if max_vocab else 10**9,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` with the organism's special tokens (BOS prepended)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        padding_side="right",
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained`` (a folder holding ``tokenizer.json``)."""
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def token_word(token: str) -> str:
    """The word a token stands for (``⏎`` -> ``"\\n"``; other tokens are their word)."""
    return "\n" if token == NEWLINE_TOKEN else token


def encode_batch(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, *without* BOS/EOS (fast path through the Rust backend)."""
    encs = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return [e.ids for e in encs]
