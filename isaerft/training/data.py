"""Training data: rows (read, rendered and tokenised by :mod:`isaerft.rows`) to token
sequences with loss masks, truncated, filtered and packed.

Every example becomes token ids plus a boolean *loss mask* aligned with the ids:
``loss_mask[t]`` is true when token ``t`` is a training target (predicted from position
``t - 1``), so position 0 is never a target.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isaerft import rows as row_pipeline
from isaerft.rows import ROW_FORMATS, RenderedRow, RowEncoder
from isaerft.training.recipe import PREFERENCE_OBJECTIVES, DataConfig


@dataclass
class TokenSequences:
    """Variable-length token sequences with their loss masks (both 1-D, same length)."""

    ids: list[torch.Tensor]
    loss_mask: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.ids)

    def num_targets(self, rows: Sequence[int]) -> int:
        """How many loss tokens the given rows hold."""
        return int(sum(int(self.loss_mask[i].sum()) for i in rows))

    def lengths(self) -> list[int]:
        """Token count of every sequence."""
        return [len(x) for x in self.ids]


@dataclass
class TokenizedData:
    """A tokenized dataset: one stream ``"main"``, or ``"chosen"`` + ``"rejected"`` for DPO."""

    streams: dict[str, TokenSequences]
    source: str

    @property
    def is_preference(self) -> bool:
        """Whether the data holds preference pairs (``chosen``/``rejected`` streams)."""
        return "chosen" in self.streams

    def __len__(self) -> int:
        return len(next(iter(self.streams.values())))

    def fingerprint(self) -> str:
        """A sha256 over every token id and loss mask: identifies the data for caches/resume."""
        digest = hashlib.sha256()
        for name in sorted(self.streams):
            stream = self.streams[name]
            digest.update(name.encode())
            for ids, mask in zip(stream.ids, stream.loss_mask):
                digest.update(ids.to(torch.int64).numpy().tobytes())
                digest.update(mask.to(torch.uint8).numpy().tobytes())
                digest.update(b"|")
        return "sha256:" + digest.hexdigest()


def load_rows(config: DataConfig, path: str | Path | None = None) -> Any:
    """Load the rows of ``config`` as a ``datasets.Dataset`` (:func:`isaerft.rows.load_rows`).

    ``path`` overrides ``config.path`` (e.g. a generated organism dataset). Local files are
    read with the matching ``datasets`` builder; anything else that does not look like a file
    is treated as a Hugging Face hub dataset name.
    """
    source = str(path if path is not None else config.path)
    return row_pipeline.load_rows(source, split=config.split, limit=config.limit)


def detect_format(columns: Sequence[str], config: DataConfig, objective: str) -> str:
    """The row format: ``config.format`` checked against the columns, or detected if ``auto``."""
    cols = set(columns)

    def has(fmt: str) -> bool:
        return all(c in cols for c in row_pipeline.columns(fmt, config))

    fmt = config.format
    if fmt == "auto":
        order = ("preference",) if objective in PREFERENCE_OBJECTIVES else ROW_FORMATS
        fmt = next((f for f in order if has(f)), "")
        if not fmt:
            options = {f: row_pipeline.columns(f, config) for f in order}
            raise ValueError(
                f"cannot find the columns for objective {objective!r}: the data has columns "
                f"{sorted(cols)}, expected one of {options}; rename them or set data.<x>_field"
            )
    elif not has(fmt):
        wanted = row_pipeline.columns(fmt, config)
        raise ValueError(
            f"data.format={fmt!r} needs columns {wanted} but the data has {sorted(cols)}; "
            "set the data.<x>_field options to the names your data uses"
        )
    if objective == "sft" and fmt == "text":
        raise ValueError(
            "objective.kind=sft trains on completions, but the rows are plain text; use "
            "objective.kind=lm or rows with prompt/completion (or chat messages)"
        )
    if objective in PREFERENCE_OBJECTIVES and fmt != "preference":
        raise ValueError(f"objective.kind={objective} needs preference rows, got {fmt!r} rows")
    if objective not in PREFERENCE_OBJECTIVES and fmt == "preference":
        raise ValueError("preference rows (chosen/rejected) need objective.kind=dpo or reps")
    return fmt


def tokenize(
    rows: Any,
    config: DataConfig,
    *,
    objective: str,
    tokenizer: Any,
    n_ctx: int,
    prepend_bos: bool = True,
    source: str = "",
) -> TokenizedData:
    """Tokenize ``rows`` (a ``datasets.Dataset`` or a list of dicts) for ``objective``.

    Rows longer than ``config.max_length`` (default ``n_ctx``) are truncated with a warning;
    rows left without any loss token are dropped with a warning.
    """
    columns = rows.column_names if hasattr(rows, "column_names") else sorted(rows[0])
    fmt = detect_format(columns, config, objective)
    max_length = config.max_length or n_ctx
    if max_length > n_ctx:
        raise ValueError(
            f"data.max_length={max_length} exceeds the model's context n_ctx={n_ctx}; lower it"
        )
    enc = RowEncoder(tokenizer, prepend_bos, config.append_eos)
    records = [dict(r) for r in rows]
    needed = row_pipeline.columns(fmt, config)
    if fmt == "preference" and config.prompt_field in columns:
        needed.append(config.prompt_field)
    row_pipeline.refuse_missing_values(records, [needed] * len(records), source)
    if fmt == "preference":
        streams = {
            name: _sequences(enc, _preference_side(enc, records, config, field), True)
            for name, field in (
                ("chosen", config.chosen_field),
                ("rejected", config.rejected_field),
            )
        }
    else:
        rendered = [enc.render(r, fmt, f"row {i}", config) for i, r in enumerate(records)]
        streams = {"main": _sequences(enc, rendered, objective == "sft")}
    data = TokenizedData(streams, source)
    data = _truncate(data, max_length) if not config.packing else data
    if data.is_preference:
        data = _drop_identical_pairs(data)
    data = _drop_untrainable(data)
    if config.packing:
        data = TokenizedData({"main": pack(data.streams["main"], max_length)}, source)
    return data


def _preference_side(
    enc: RowEncoder, records: list[dict[str, Any]], config: DataConfig, field: str
) -> list[RenderedRow]:
    """One side of preference rows as text. A side given as a message list (e.g.
    ultrafeedback_binarized) is rendered as chat, its last turn the reply."""
    out = []
    for i, r in enumerate(records):
        value = r[field]
        if isinstance(value, list):
            out.append(row_pipeline.render_chat(value, f"row {i} {field}", enc.tokenizer))
        elif config.prompt_field in r:
            out.append(RenderedRow(str(r[config.prompt_field]), str(value)))
        else:
            raise ValueError(
                f"row {i}: preference rows with text {field!r} need a {config.prompt_field!r} "
                f"column (found {sorted(r)}); or give {field!r} as a list of chat messages"
            )
    return out


def _sequences(
    enc: RowEncoder, rendered: list[RenderedRow], completion_only: bool
) -> TokenSequences:
    ids, masks = [], []
    for row in enc.encode_rows(rendered):
        seq = torch.tensor(row.ids, dtype=torch.long)
        mask = torch.zeros(len(seq), dtype=torch.bool)
        # An empty completion (or text) has nothing to learn: no targets, so the row is
        # dropped, rather than trained to answer with EOS alone.
        if row.completion_length:
            mask[row.prompt_length if completion_only else 1 :] = True
        mask[0] = False
        ids.append(seq)
        masks.append(mask)
    return TokenSequences(ids, masks)


def _drop_identical_pairs(data: TokenizedData) -> TokenizedData:
    """Drop preference pairs whose chosen and rejected sequences are identical (with a count):
    they state no preference, and training on them would learn float noise."""
    chosen, rejected = data.streams["chosen"], data.streams["rejected"]
    keep = [
        i
        for i in range(len(data))
        if not (
            torch.equal(chosen.ids[i], rejected.ids[i])
            and torch.equal(chosen.loss_mask[i], rejected.loss_mask[i])
        )
    ]
    if len(keep) == len(data):
        return data
    if not keep:
        raise ValueError(
            f"every preference pair of {data.source or 'the data'} has chosen == rejected; "
            "there is no preference to learn: check the chosen/rejected columns"
        )
    warnings.warn(
        f"dropped {len(data) - len(keep)} of {len(data)} preference pairs whose chosen and "
        "rejected are identical (no preference to learn)",
        UserWarning,
        stacklevel=4,
    )
    return _select(data, keep)


def _select(data: TokenizedData, keep: list[int]) -> TokenizedData:
    streams = {
        name: TokenSequences([s.ids[i] for i in keep], [s.loss_mask[i] for i in keep])
        for name, s in data.streams.items()
    }
    return TokenizedData(streams, data.source)


def _truncate(data: TokenizedData, max_length: int) -> TokenizedData:
    too_long = {
        i for s in data.streams.values() for i, n in enumerate(s.lengths()) if n > max_length
    }
    if too_long:
        longest = max(n for s in data.streams.values() for n in s.lengths())
        warnings.warn(
            f"{len(too_long)} of {len(data)} rows are longer than {max_length} tokens (longest "
            f"{longest}) and were truncated; raise data.max_length (up to the model's n_ctx) or "
            "shorten the rows",
            UserWarning,
            stacklevel=3,
        )
    streams = {
        name: TokenSequences([x[:max_length] for x in s.ids], [m[:max_length] for m in s.loss_mask])
        for name, s in data.streams.items()
    }
    return TokenizedData(streams, data.source)


def _drop_untrainable(data: TokenizedData) -> TokenizedData:
    keep = [
        i
        for i in range(len(data))
        if all(bool(s.loss_mask[i].any()) for s in data.streams.values())
    ]
    if not keep:
        raise ValueError(
            f"no row of {data.source or 'the dataset'} has a token to train on (empty "
            "completions, or prompts longer than data.max_length); check the data"
        )
    if len(keep) < len(data):
        warnings.warn(
            f"dropped {len(data) - len(keep)} of {len(data)} rows with no token to train on "
            "(empty completion, or truncated before it)",
            UserWarning,
            stacklevel=3,
        )
        return _select(data, keep)
    return data


def pack(stream: TokenSequences, block: int) -> TokenSequences:
    """Concatenate sequences and cut them into blocks of ``block`` tokens (the last may be
    shorter). Each block's first token is never a target, as it has no context in the block."""
    ids = torch.cat(stream.ids)
    mask = torch.cat(stream.loss_mask)
    out_ids = list(ids.split(block))
    out_mask = [m.clone() for m in mask.split(block)]
    for m in out_mask:
        m[0] = False
    kept = [(i, m) for i, m in zip(out_ids, out_mask) if m.any()]
    return TokenSequences([i for i, _ in kept], [m for _, m in kept])
