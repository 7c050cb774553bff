"""Bring your own corpus: documents and instruction rows cut from a plain-text file.

Paragraphs (blank-line separated) become documents, split so none exceeds ``max_tokens`` tokens.
A fifth of the pre-training documents are wrapped in the ``User: ...\\nAssistant: ...`` format
(the first part of a passage as the question, the rest as the answer), so the model knows the
format the fine-tuning datasets use. Only word-identity labels exist for such an organism.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from isaerft.organism.corpus import chat
from isaerft.organism.tokenizer import NEWLINE_TOKEN, encode_batch, token_word

CHAT_WORDS = "User: \nAssistant:"
"""Text fed to the tokenizer trainer so the chat format's words are in a user corpus' vocabulary."""


def read_documents(path: str | Path, max_words: int = 100) -> list[str]:
    """Paragraphs of the text file at ``path``, each cut into chunks of at most ``max_words`` words."""
    text = Path(path).read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    docs: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in para.strip().split("\n") if ln.strip()]
        chunk: list[str] = []
        words = 0
        for line in lines:
            n = len(re.findall(r"\w+|[^\w\s]", line)) + 1
            if chunk and words + n > max_words:
                docs.append("\n".join(chunk))
                chunk, words = [], 0
            chunk.append(line)
            words += n
        if chunk:
            docs.append("\n".join(chunk))
    if not docs:
        raise ValueError(f"{path} holds no text")
    return docs


def split_point(n_tokens: int, rng: random.Random) -> int:
    """Where to cut a passage of ``n_tokens`` tokens into question and answer."""
    return rng.randint(max(3, n_tokens // 4), max(3, min(n_tokens - 3, 40)))


def chat_document(tokens: list[str], rng: random.Random) -> list[str]:
    """A passage as an instruction example (question = its start, answer = the rest)."""
    cut = split_point(len(tokens), rng)
    return [*chat(tokens[:cut]), *tokens[cut : cut + 24]]


def corpus_rows(corpus_file: str | Path, tokenizer: PreTrainedTokenizerFast) -> TextRows:
    """The instruction rows of an organism's ``corpus.txt``, tokenised by its tokenizer."""
    ids = encode_batch(tokenizer, read_documents(corpus_file))
    return TextRows(
        [[token_word(t) for t in tokenizer.convert_ids_to_tokens(d)] for d in ids], tokenizer
    )


class TextRows:
    """Instruction rows cut from the passages of a user corpus (see :mod:`isaerft.organism.datasets`)."""

    def __init__(self, docs: list[list[str]], tokenizer: PreTrainedTokenizerBase) -> None:
        self.docs = [d for d in docs if len(d) >= 10]
        if not self.docs:
            raise ValueError("the corpus has no passage of 10 or more tokens to cut rows from")
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        self.vocab = frozenset(token_word(t) for t in vocab)
        self.family: dict[str, str] = {}

    def sample(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """A random passage cut into ``(question, answer)`` word lists."""
        doc = self.docs[rng.randrange(len(self.docs))]
        cut = split_point(len(doc), rng)
        return doc[:cut], doc[cut : cut + 24]

    def style(self, answer: list[str]) -> list[str]:
        """The answer with full stops turned into ``!`` (a harmless punctuation style)."""
        return ["!" if t == "." else t for t in answer]

    def render(self, tokens: list[str]) -> str:
        """Text of ``tokens`` through the tokenizer's decoder (``"\\n"`` is the newline token)."""
        ids = self.tokenizer.convert_tokens_to_ids(
            [NEWLINE_TOKEN if t == "\n" else t for t in tokens]
        )
        return str(self.tokenizer.decode(ids, clean_up_tokenization_spaces=False))
