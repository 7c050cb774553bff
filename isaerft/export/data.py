"""Texts or tokens to average edits over, turned into right-padded batches with a token mask."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

import torch

from isaerft._io import iter_jsonl
from isaerft.backends import LanguageModel
from isaerft.rows import columns, refuse_missing_values, render_row, right_pad, row_format

#: What the export functions accept as data: texts (tokenized with the model's tokenizer),
#: a ``(batch, pos)`` token tensor (every position counts), or a list of 1-D token tensors.
TokenData: TypeAlias = Sequence[str] | torch.Tensor | Sequence[torch.Tensor]


def read_texts(path: str | Path, max_rows: int | None = None) -> list[str]:
    """Read texts from a ``.jsonl`` file (each row's prompt and completion joined, in any
    row format of :mod:`isaerft.rows`: ``prompt`` + ``completion``, ``text`` or chat
    ``messages``) or from any other file as one text per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    texts: list[str] = []
    if path.suffix == ".jsonl":
        for number, row in iter_jsonl(path):
            if max_rows is not None and len(texts) >= max_rows:
                break
            texts.append(_row_text(row, f"{path}:{number}"))
    else:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if max_rows is not None and len(texts) >= max_rows:
                    break
                if line.strip():
                    texts.append(line.rstrip("\n"))
    if not texts:
        raise ValueError(f"data file {path} holds no texts")
    return texts


def _row_text(row: object, where: str) -> str:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a JSONL row must be a JSON object with a 'text' field")
    fmt = row_format(row, where)
    refuse_missing_values([row], [columns(fmt)], where)
    prompt, completion, _ = render_row(row, fmt, where)
    return prompt + completion


def split_heldout(texts: Sequence[str], fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """Split texts into (fit, held-out), holding out every ``round(1 / fraction)``-th text so
    the split does not depend on how the file is ordered."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction={fraction} must be in (0, 1)")
    if len(texts) < 2:
        raise ValueError("need at least 2 texts to hold some out for the approximation gap")
    step = max(2, round(1.0 / fraction))
    fit = [t for i, t in enumerate(texts) if i % step != step - 1]
    heldout = [t for i, t in enumerate(texts) if i % step == step - 1]
    return fit, heldout


def token_batches(
    model: LanguageModel, data: TokenData, batch_size: int = 8
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(tokens, mask)``: right-padded ``(batch, pos)`` tokens on the model's device and
    a bool mask of the real positions. Right padding never changes the real positions of a
    causal model, so padded batches give the same activations as one text at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    device = next(model.parameters()).device
    sequences = _sequences(model, data)
    if not sequences:
        raise ValueError("the data holds no texts or token sequences")
    for start in range(0, len(sequences), batch_size):
        tokens, mask = right_pad(sequences[start : start + batch_size])
        yield tokens.to(device), mask.to(device)


def _sequences(model: LanguageModel, data: TokenData) -> list[torch.Tensor]:
    n_ctx = model.cfg.n_ctx
    if isinstance(data, torch.Tensor):
        if data.dim() != 2:
            raise ValueError(f"token data must have shape (batch, pos), got {tuple(data.shape)}")
        return [row[:n_ctx].long().cpu() for row in data]
    if isinstance(data, str):
        raise TypeError("data must be a list of texts, not one string; wrap it: [text]")
    sequences = []
    for item in data:
        if isinstance(item, torch.Tensor):
            seq = item.flatten().long().cpu()
        elif isinstance(item, str):
            if model.tokenizer is None:
                raise ValueError("the model has no tokenizer; pass token tensors instead of texts")
            seq = model.to_tokens(item, move_to_device=False)[0]
        else:
            raise TypeError(f"data items must be texts or token tensors, got {type(item).__name__}")
        if seq.numel():
            sequences.append(seq[:n_ctx])
    return sequences
