"""The shared row pipeline: reading any source training reads, padding, JSON-lines errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isaerft._io import check_format, iter_jsonl, read_versioned_json
from isaerft.rows import completion_mask, padded_batches, read_rows, right_pad


def test_read_rows_keeps_mixed_jsonl_and_reads_csv_as_training_does(tmp_path: Path) -> None:
    mixed = tmp_path / "d.jsonl"
    mixed.write_text('{"text": "a"}\n\n{"prompt": "b", "completion": "c"}\n', encoding="utf-8")
    assert read_rows(mixed) == [{"text": "a"}, {"prompt": "b", "completion": "c"}]
    assert read_rows(mixed, limit=1) == [{"text": "a"}]
    csv = tmp_path / "d.csv"
    csv.write_text("prompt,completion\nUser: hi,the cat\n", encoding="utf-8")
    assert read_rows(csv) == [{"prompt": "User: hi", "completion": "the cat"}]
    with pytest.raises(FileNotFoundError, match="not found"):
        read_rows(tmp_path / "missing.csv")


def test_right_pad_and_completion_masks() -> None:
    seqs = [torch.tensor([5, 6, 7]), torch.tensor([8])]
    tokens, mask = right_pad(seqs, pad_id=1)
    assert tokens.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert completion_mask([3, 1], [2, 0], 3).tolist() == [[False, False, True], [False] * 3]
    batches = list(padded_batches(seqs, [2, 0], batch_size=1))
    assert [b[0].shape[1] for b in batches] == [3, 1]
    assert batches[0][1].dtype == torch.long and batches[0][2].tolist() == [[False, False, True]]


def test_jsonl_and_versioned_json_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2 is not JSON"):
        list(iter_jsonl(bad))
    record = tmp_path / "r.json"
    record.write_text(json.dumps({"format": "x", "format_version": 3}), encoding="utf-8")
    assert read_versioned_json(record, kind="x", version=3, what="an x")["format_version"] == 3
    with pytest.raises(ValueError, match=r"newer isaerft.*upgrade isaerft"):
        read_versioned_json(record, kind="x", version=2, what="an x")
    with pytest.raises(ValueError, match=r"r\.json is not an y \(format 'x', expected 'y'\)"):
        read_versioned_json(record, kind="y", version=3, what="an y")
    with pytest.raises(ValueError, match="this isaerft can read"):
        check_format(
            {"format": "x", "format_version": 2}, "p", kind="x", version=3, what="an x", exact=True
        )
    record.write_text('{"format": "x', encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.json is not valid JSON"):
        read_versioned_json(record, kind="x", version=3, what="an x")
