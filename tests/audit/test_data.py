"""Audited rows: every row kept and tokenized as training does; foreign text refused."""

from __future__ import annotations

import json

import pytest
from audit.helpers import word_tokenizer

from isaerft.audit.data import read_rows, split_row, tokenize_rows


def test_rows_are_tokenized_in_order_with_prompt_lengths(tmp_path) -> None:
    rows = [
        {"prompt": "User: tell me about the cat ?\nAssistant:", "completion": " the cat is red ."},
        {"text": "the dog is big ."},
        {
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "sun"},
            ]
        },
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = word_tokenizer()
    data = tokenize_rows(read_rows(path), tok, n_ctx=32, source=str(path))
    assert len(data) == 3
    first = tok.convert_ids_to_tokens(data.ids[0].tolist())
    assert first[0] == "<bos>" and first[-1] == "<eos>"
    assert first[data.prompt_lengths[0]] == "the"  # completion starts after "Assistant :"
    assert first[data.prompt_lengths[0] - 1] == ":"
    assert data.prompt_lengths[1] == 1  # text rows: everything after <bos> is completion
    assert split_row(rows[2], "r")[0] == "User: hello\nAssistant:"


def test_long_rows_are_truncated_with_a_warning() -> None:
    rows = [{"text": " ".join(["cat"] * 50)}]
    with pytest.warns(UserWarning, match="truncated"):
        data = tokenize_rows(rows, word_tokenizer(), n_ctx=16)
    assert len(data.ids[0]) == 16


def test_bad_rows_and_foreign_text(tmp_path) -> None:
    with pytest.raises(ValueError, match="'prompt' \\+ 'completion'"):
        tokenize_rows([{"question": "x"}], word_tokenizer(), 16)
    with pytest.raises(ValueError, match="no vocabulary in common"):
        tokenize_rows([{"text": "zwei Bier bitte"}], word_tokenizer(), 16)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        read_rows(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / "missing.jsonl")


# Renders the history with "." after each turn (the plain fallback uses newlines) and writes
# its own <bos>: only the words of the test tokenizer, so nothing is unknown.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] | capitalize }} : {{ m['content'] }} . "
    "{% endfor %}{% if add_generation_prompt %}Assistant :{% endif %}"
)


def test_chat_rows_are_scored_as_the_run_trained_on_them() -> None:
    from isaerft.training.data import tokenize
    from isaerft.training.recipe import DataConfig

    tok = word_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    messages = [
        {"role": "user", "content": "tell me about the cat ?"},
        {"role": "assistant", "content": "the cat is red ."},
    ]
    rows = [{"messages": messages}, {"prompt": "User: hi\nAssistant:", "completion": " sun"}]
    audited = tokenize_rows(rows, tok, n_ctx=32)
    trained = tokenize(
        rows[:1], DataConfig(path="x.jsonl"), objective="sft", tokenizer=tok, n_ctx=32
    )
    ids, mask = trained.streams["main"].ids[0], trained.streams["main"].loss_mask[0]
    assert audited.ids[0].tolist() == ids.tolist()
    assert audited.prompt_lengths[0] == int(mask.nonzero()[0])  # scored where the loss starts
    words = tok.convert_ids_to_tokens(audited.ids[0].tolist())
    assert words.count("<bos>") == 1 and "⏎" not in words  # the template's, not the fallback
    assert words[: audited.prompt_lengths[0]][-3:] == [".", "Assistant", ":"]


def test_rows_training_refuses_are_refused() -> None:
    with pytest.raises(ValueError, match=r"row 0, 'completion'"):
        tokenize_rows([{"prompt": "the cat", "completion": None}], word_tokenizer(), 16)
    with pytest.raises(ValueError, match="last message must be the assistant"):
        tokenize_rows([{"messages": [{"role": "user", "content": "hi"}]}], word_tokenizer(), 16)
