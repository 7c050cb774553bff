"""The word-level tokenizer: one word = one token, exact round trips, TransformerLens offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from isaerft.organism.corpus import Language
from isaerft.organism.tokenizer import (
    BOS,
    NEWLINE_TOKEN,
    encode_batch,
    load_tokenizer,
    token_word,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def docs() -> list:
    return list(Language(0).documents(3000, "tok"))


@pytest.fixture(scope="module")
def tok_dir(docs: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok")
    train_tokenizer(d.text for d in docs).save_pretrained(str(path))
    return path


def test_one_word_one_token(docs: list, tok_dir: Path) -> None:
    tok = load_tokenizer(tok_dir)
    ids = encode_batch(tok, [d.text for d in docs])
    for d, row in zip(docs, ids):
        assert [token_word(t) for t in tok.convert_ids_to_tokens(row)] == list(d.tokens)
    assert tok.unk_token_id not in {i for row in ids for i in row}


def test_round_trip_and_bos(docs: list, tok_dir: Path) -> None:
    tok = load_tokenizer(tok_dir)
    for d in docs[:200]:
        ids = tok(d.text).input_ids
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert tok.decode(ids[1:]) == d.text
    assert tok.eos_token is not None and tok.pad_token is not None
    assert tok.convert_ids_to_tokens(tok("a\nthe").input_ids)[1:] == ["a", NEWLINE_TOKEN, "the"]


def test_prompt_plus_completion_tokenizes_additively(docs: list, tok_dir: Path) -> None:
    tok = load_tokenizer(tok_dir)
    for d in [d for d in docs if d.kind == "instruction"][:100]:
        whole = encode_batch(tok, [d.text])[0]
        parts = encode_batch(tok, [d.prompt, d.completion])
        assert whole == parts[0] + parts[1]


def test_unknown_words_and_vocab_cap() -> None:
    tok = train_tokenizer(["a a a b b c"], max_vocab=2)
    assert tok.convert_ids_to_tokens(encode_batch(tok, ["a b c"])[0]) == ["a", "b", "<unk>"]
    low = train_tokenizer(["The the THE"], lowercase=True)
    assert set(low.get_vocab()) - {"<pad>", "<bos>", "<eos>", "<unk>"} == {"the"}


def test_transformer_lens_offline(
    docs: list, tok_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TransformerLens reloads the tokenizer by path (add_bos_token=True): it must work offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=16,
        n_ctx=64,
        d_head=8,
        n_heads=2,
        d_vocab=len(tok),
        act_fn="gelu",
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tok)
    text = docs[0].text
    tokens = model.to_tokens(text)
    assert tokens[0, 0].item() == tok.bos_token_id
    assert (tokens == tok.bos_token_id).sum() == 1
    assert model.to_string(tokens[0, 1:]) == text
    assert model.to_string(tokens[0]).startswith(BOS)
    out = model.generate("User: hello!\nAssistant:", max_new_tokens=3, verbose=False)
    assert isinstance(out, str) and out.startswith("User: hello!\nAssistant:")
    batch = model.to_tokens(["the owl hoots.", "the cat"])
    assert batch.shape[0] == 2 and torch.all(batch[:, 0] == tok.bos_token_id)
