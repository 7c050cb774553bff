"""Reading texts, holding some out, and padded token batches with a mask."""

from __future__ import annotations

import json

import pytest
import torch
from factories import tiny_model

from isaerft.export.data import read_texts, split_heldout, token_batches


def test_read_jsonl_text_or_prompt_completion(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "a b"}, {"prompt": "User: hi\nAssistant:", "completion": " yo"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_texts(path) == ["a b", "User: hi\nAssistant: yo"]
    assert read_texts(path, max_rows=1) == ["a b"]


def test_read_plain_lines(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("first line\n\nsecond line\n")
    assert read_texts(path) == ["first line", "second line"]


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_texts(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "only a prompt"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: .*'text'"):
        read_texts(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no texts"):
        read_texts(empty)


def test_split_heldout_takes_every_fifth():
    texts = [str(i) for i in range(10)]
    fit, heldout = split_heldout(texts)
    assert heldout == ["4", "9"] and len(fit) == 8
    with pytest.raises(ValueError, match="fraction"):
        split_heldout(texts, fraction=1.5)


def test_token_batches_pad_right_and_mask():
    model = tiny_model()
    seqs = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    batches = list(token_batches(model, seqs, batch_size=2))
    assert len(batches) == 2
    tokens, mask = batches[0]
    assert tokens.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    with pytest.raises(TypeError, match="one string"):
        list(token_batches(model, "just text"))
    with pytest.raises(ValueError, match="no tokenizer"):
        list(token_batches(model, ["text"]))
    with pytest.raises(ValueError, match="batch_size"):
        list(token_batches(model, seqs, batch_size=0))
