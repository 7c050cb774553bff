"""Audited rows as token sequences, one per dataset row, so every score maps back to its row.

The audit reads rows with ``prompt`` + ``completion`` (the organism's and the SFT format),
``text``, or chat ``messages`` (each row's own format). It tokenizes them with training's row
pipeline (:mod:`isaerft.rows`: ``<bos> prompt completion <eos>``, chat rows through the
tokenizer's chat template), so it scores the very ids a run trained on; it truncates to the
model's context and never drops a row: row ``i`` of the file is sequence ``i`` here, which is
what ``suspects.jsonl`` refers to.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from isaerft import rows as row_pipeline
from isaerft.rows import DEFAULT_FIELDS, RowEncoder, read_rows, split_row, token_logprobs

__all__ = [
    "MAX_UNKNOWN_FRACTION",
    "AuditData",
    "check_vocabulary_overlap",
    "has_prompts",
    "padded_batches",
    "read_rows",
    "run_device",
    "split_row",
    "token_logprobs",
    "tokenize_rows",
]

MAX_UNKNOWN_FRACTION = 0.5


@dataclass
class AuditData:
    """Token sequences of a dataset's rows.

    Attributes:
        ids: per row, the 1-D token ids (``<bos>`` first).
        prompt_lengths: per row, how many leading tokens are prompt (incl. ``<bos>``); the
            rest is the completion (for ``text`` rows, everything after ``<bos>``).
        rows: the raw rows, as read.
        source: the file the rows came from.
    """

    ids: list[torch.Tensor]
    prompt_lengths: list[int]
    rows: list[dict[str, Any]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_tokens(self) -> int:
        """Tokens over all rows."""
        return sum(len(x) for x in self.ids)

    def prompt_ids(self, i: int) -> torch.Tensor:
        """Row ``i``'s prompt tokens (``<bos>`` first)."""
        return self.ids[i][: self.prompt_lengths[i]]

    def completion_ids(self, i: int) -> torch.Tensor:
        """Row ``i``'s completion tokens."""
        return self.ids[i][self.prompt_lengths[i] :]

    def subset(self, rows: Sequence[int]) -> AuditData:
        """The given rows, in that order."""
        return AuditData(
            [self.ids[i] for i in rows],
            [self.prompt_lengths[i] for i in rows],
            [self.rows[i] for i in rows],
            self.source,
        )


def has_prompts(data: AuditData) -> bool:
    """Whether the rows have prompts (prompt/completion or chat rows, not plain text)."""
    return sum(n > 1 for n in data.prompt_lengths) >= 2


def run_device(model: Any) -> torch.device:
    """The device of a spliced model (an :class:`~isaerft.model.ISaeRFTModel`): where its
    batches go."""
    return next(model.model.parameters()).device


def padded_batches(
    data: AuditData, batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(tokens, attention_mask, completion_mask)`` batches of ``data``'s rows, in order,
    right-padded; ``completion_mask[i, t]`` marks the completion tokens of row ``i``."""
    return row_pipeline.padded_batches(data.ids, data.prompt_lengths, batch_size, device)


def tokenize_rows(
    rows: list[dict[str, Any]],
    tokenizer: Any,
    n_ctx: int,
    *,
    source: str = "",
    append_eos: bool = True,
    prepend_bos: bool = True,
) -> AuditData:
    """Tokenize rows as training does; raise if the tokenizer does not know the data's words.

    Each row keeps its own format; a missing or null field, or a chat row that training would
    refuse, is an error here too.
    """
    if tokenizer is None:
        raise ValueError("the model has no tokenizer; the audit needs one to read dataset rows")
    enc = RowEncoder(tokenizer, prepend_bos, append_eos)
    where = [f"{source or 'dataset'} row {i}" for i in range(len(rows))]
    formats = [row_pipeline.row_format(r, w) for r, w in zip(rows, where)]
    needed = [row_pipeline.columns(fmt) for fmt in formats]
    row_pipeline.refuse_missing_values(rows, needed, source)
    encoded = enc.encode_rows(
        [enc.render(r, fmt, w, DEFAULT_FIELDS) for r, fmt, w in zip(rows, formats, where)]
    )
    ids, prompt_lengths, truncated = [], [], 0
    for row in encoded:
        truncated += len(row.ids) > n_ctx
        ids.append(torch.tensor(row.ids[:n_ctx], dtype=torch.long))
        prompt_lengths.append(min(row.prompt_length, n_ctx))
    if truncated:
        warnings.warn(
            f"{truncated} of {len(rows)} rows of {source or 'the dataset'} are longer than the "
            f"model's context ({n_ctx} tokens) and were truncated",
            UserWarning,
            stacklevel=2,
        )
    data = AuditData(ids, prompt_lengths, rows, source)
    check_vocabulary_overlap(data, tokenizer)
    return data


def check_vocabulary_overlap(data: AuditData, tokenizer: Any) -> None:
    """Raise ``ValueError`` when most of the data's tokens are unknown to ``tokenizer``."""
    unk = getattr(tokenizer, "unk_token_id", None)
    # Special tokens (bos, eos, pad) say nothing about the text; the unknown token does.
    special = set(getattr(tokenizer, "all_special_ids", None) or []) - {unk}
    real = torch.cat(data.ids) if data.ids else torch.zeros(0, dtype=torch.long)
    if special:
        real = real[~torch.isin(real, torch.tensor(sorted(special)))]
    if real.numel() == 0:
        raise ValueError(
            f"{data.source or 'the dataset'} has no text tokens for this model's tokenizer "
            "(every row is empty); check the dataset's columns"
        )
    if unk is None:
        return
    unknown = float((real == unk).float().mean())
    if unknown > MAX_UNKNOWN_FRACTION:
        raise ValueError(
            f"{unknown:.0%} of the tokens of {data.source or 'the dataset'} are unknown to the "
            "run's tokenizer: the data has (almost) no vocabulary in common with the model it "
            "audits. Audit it with the model the run was trained on, or check the file"
        )
