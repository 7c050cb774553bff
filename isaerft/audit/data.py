"""Audited rows as token sequences, one per dataset row, so every score maps back to its row.

The audit reads JSONL rows with ``prompt`` + ``completion`` (the organism's and the SFT
format), ``text``, or chat ``messages``. It tokenizes them the way training does
(``<bos> prompt completion <eos>``), truncates to the model's context, and never drops a row:
row ``i`` of the file is sequence ``i`` here, which is what ``suspects.jsonl`` refers to.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

MAX_UNKNOWN_FRACTION = 0.5
_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


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

    def subset(self, rows: Sequence[int]) -> AuditData:
        """The given rows, in that order."""
        return AuditData(
            [self.ids[i] for i in rows],
            [self.prompt_lengths[i] for i in rows],
            [self.rows[i] for i in rows],
            self.source,
        )


def padded_batches(
    data: AuditData, batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(tokens, attention_mask, completion_mask)`` batches of ``data``'s rows, in order,
    right-padded; ``completion_mask[i, t]`` marks the completion tokens of row ``i``."""
    for start in range(0, len(data), batch_size):
        group = data.ids[start : start + batch_size]
        length = max(len(s) for s in group)
        tokens = torch.zeros((len(group), length), dtype=torch.long)
        mask = torch.zeros((len(group), length), dtype=torch.long)
        target = torch.zeros((len(group), length), dtype=torch.bool)
        for i, seq in enumerate(group):
            tokens[i, : len(seq)], mask[i, : len(seq)] = seq, 1
            target[i, max(1, data.prompt_lengths[start + i]) : len(seq)] = True
        yield tokens.to(device), mask.to(device), target.to(device)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log p(tokens[:, t + 1] | tokens[:, :t + 1])``, shape ``(batch, seq - 1)``."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` file (one JSON object per line) or a ``.json`` list of objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} not found; pass a .jsonl file of rows")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path} must hold a JSON list of row objects")
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {n} is not JSON: {err}") from err
    if not rows:
        raise ValueError(f"dataset {path} has no rows")
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: every row must be a JSON object")
    return rows


def split_row(row: dict[str, Any], where: str) -> tuple[str, str]:
    """``(prompt, completion)`` of a row in any supported format."""
    if "prompt" in row and "completion" in row:
        return str(row["prompt"]), str(row["completion"])
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: 'messages' must be a non-empty list")
        lines = [
            f"{_ROLES.get(m['role'], str(m['role']).title())}: {m['content']}"
            for m in messages[:-1]
        ]
        return "\n".join([*lines, "Assistant:"]), " " + str(messages[-1]["content"])
    if "text" in row:
        return "", str(row["text"])
    raise ValueError(
        f"{where} has columns {sorted(row)}; the audit needs 'prompt' + 'completion', 'text' or "
        "'messages'"
    )


def tokenize_rows(
    rows: list[dict[str, Any]],
    tokenizer: Any,
    n_ctx: int,
    *,
    source: str = "",
    append_eos: bool = True,
) -> AuditData:
    """Tokenize rows as training does; raise if the tokenizer does not know the data's words."""
    if tokenizer is None:
        raise ValueError("the model has no tokenizer; the audit needs one to read dataset rows")
    parts = [split_row(r, f"{source or 'dataset'} row {i}") for i, r in enumerate(rows)]
    prompts = _encode(tokenizer, [p for p, _ in parts])
    completions = _encode(tokenizer, [c for _, c in parts])
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    ids, prompt_lengths, truncated = [], [], 0
    for p, c in zip(prompts, completions):
        seq = bos + p + c + eos
        truncated += len(seq) > n_ctx
        ids.append(torch.tensor(seq[:n_ctx], dtype=torch.long))
        prompt_lengths.append(min(len(bos) + len(p), n_ctx))
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


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t]
    if todo:
        encoded = tokenizer([texts[i] for i in todo], add_special_tokens=False)["input_ids"]
        for i, ids in zip(todo, encoded):
            out[i] = list(ids)
    return out


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
