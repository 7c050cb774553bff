"""Rows to token sequences: loading with ``datasets``, format detection, tokenisation, packing.

Every example becomes token ids plus a boolean *loss mask* aligned with the ids:
``loss_mask[t]`` is true when token ``t`` is a training target (predicted from position
``t - 1``), so position 0 is never a target.
"""

from __future__ import annotations

import codecs
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isaerft.training.recipe import DataConfig

LOCAL_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}
FORMAT_COLUMNS = {
    "text": ("text_field",),
    "prompt_completion": ("prompt_field", "completion_field"),
    "chat": ("messages_field",),
    "preference": ("chosen_field", "rejected_field"),
}
# Plain "User:/Assistant:" rendering for tokenizers without a chat template; it matches the
# model organism's prompt format.
_FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


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
    """Load the rows of ``config`` as a ``datasets.Dataset``.

    ``path`` overrides ``config.path`` (e.g. a generated organism dataset). Local files are
    read with the matching ``datasets`` builder; anything else that does not look like a file
    is treated as a Hugging Face hub dataset name.
    """
    import datasets

    source = str(path if path is not None else config.path)
    local = Path(source).expanduser()
    looks_local = local.suffix in LOCAL_BUILDERS or source.startswith((".", "/", "~"))
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        rows = _load(datasets, source, local, looks_local, config.split)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    if config.limit is not None:
        rows = rows.select(range(min(config.limit, len(rows))))
    if len(rows) == 0:
        raise ValueError(f"dataset {source} is empty; it needs at least one row")
    return rows


def _is_blank(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return not head.strip() and path.stat().st_size <= len(head)


def _check_utf8(path: Path) -> None:
    """Refuse a text file that is not UTF-8 now: the row reader would fail only later, on
    first access to the row, without naming the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
                offset += len(chunk)
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"data file {path} is not UTF-8 text (byte {offset + err.start}); save it "
                    "as UTF-8"
                ) from None
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ValueError(
                f"data file {path} is not UTF-8 text (it ends mid-character)"
            ) from None


def _load(datasets: Any, source: str, local: Path, looks_local: bool, split: str) -> Any:
    if local.is_file():
        if local.suffix not in LOCAL_BUILDERS:
            raise ValueError(
                f"data file {local} has an unsupported extension; "
                f"use one of {sorted(LOCAL_BUILDERS)}"
            )
        if _is_blank(local):
            raise ValueError(f"dataset {local} is empty; it needs at least one row")
        if local.suffix != ".parquet":
            _check_utf8(local)
        builder = LOCAL_BUILDERS[local.suffix]
        try:
            rows = datasets.load_dataset(
                builder, data_files=str(local), split="train", keep_in_memory=True
            )
        except (
            ValueError,
            TypeError,
            StopIteration,
            datasets.exceptions.DatasetGenerationError,
        ) as err:
            raise ValueError(f"could not read {local} as {builder} rows: {err}") from err
    elif looks_local or local.exists():
        raise FileNotFoundError(
            f"data file {local} not found; fix data.path (relative paths are resolved against the "
            "directory you run from) or use data.organism_dataset to generate one"
        )
    else:
        rows = datasets.load_dataset(source, split=split)
    return rows


def detect_format(columns: Sequence[str], config: DataConfig, objective: str) -> str:
    """The row format: ``config.format`` checked against the columns, or detected if ``auto``."""
    cols = set(columns)

    def has(fmt: str) -> bool:
        return all(getattr(config, attr) in cols for attr in FORMAT_COLUMNS[fmt])

    fmt = config.format
    if fmt == "auto":
        order = ("preference",) if objective == "dpo" else ("chat", "prompt_completion", "text")
        fmt = next((f for f in order if has(f)), "")
        if not fmt:
            options = {f: [getattr(config, a) for a in FORMAT_COLUMNS[f]] for f in order}
            raise ValueError(
                f"cannot find the columns for objective {objective!r}: the data has columns "
                f"{sorted(cols)}, expected one of {options}; rename them or set data.<x>_field"
            )
    elif not has(fmt):
        wanted = [getattr(config, a) for a in FORMAT_COLUMNS[fmt]]
        raise ValueError(
            f"data.format={fmt!r} needs columns {wanted} but the data has {sorted(cols)}; "
            "set the data.<x>_field options to the names your data uses"
        )
    if objective == "sft" and fmt == "text":
        raise ValueError(
            "objective.kind=sft trains on completions, but the rows are plain text; use "
            "objective.kind=lm or rows with prompt/completion (or chat messages)"
        )
    if objective == "dpo" and fmt != "preference":
        raise ValueError(f"objective.kind=dpo needs preference rows, got {fmt!r} rows")
    if objective != "dpo" and fmt == "preference":
        raise ValueError("preference rows (chosen/rejected) need objective.kind=dpo")
    return fmt


class RowTokenizer:
    """Turns rows into ``(prompt_ids, completion_ids)`` with the model's tokenizer."""

    def __init__(self, tokenizer: Any, prepend_bos: bool, append_eos: bool) -> None:
        if tokenizer is None:
            raise ValueError(
                "the model has no tokenizer; attach one (model.set_tokenizer(...)) or save the "
                "model with its tokenizer (isaerft.save_model writes tokenizer.json)"
            )
        self.tokenizer = tokenizer
        self.bos = (
            [tokenizer.bos_token_id] if prepend_bos and tokenizer.bos_token_id is not None else []
        )
        self.eos = (
            [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
        )

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        if not texts:
            return []
        encoded: list[list[int]] = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return encoded

    def render_chat(self, messages: Any, where: str) -> tuple[str, str, bool]:
        """``(prompt_text, completion_text, template_has_bos)`` for a message list whose last
        message is the assistant's reply (the only turn trained)."""
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: chat rows need a non-empty list of messages")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") is None or m.get("content") is None:
                raise ValueError(f"{where}: each message needs 'role' and 'content', got {m!r}")
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"{where}: the last message must be the assistant's reply to train on")
        history, reply = messages[:-1], str(messages[-1]["content"])
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(
                history, tokenize=False, add_generation_prompt=True
            )
            return str(prompt), reply, True
        lines = [
            f"{_FALLBACK_ROLES.get(m['role'], m['role'].title())}: {m['content']}" for m in history
        ]
        return "\n".join([*lines, "Assistant:"]), " " + reply, False


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
    enc = RowTokenizer(tokenizer, prepend_bos, config.append_eos)
    records = [dict(r) for r in rows]
    needed = [getattr(config, a) for a in FORMAT_COLUMNS[fmt]]
    if fmt == "preference" and config.prompt_field in columns:
        needed.append(config.prompt_field)
    _refuse_missing_values(records, needed, source)
    if fmt == "preference":
        streams = {
            name: _prompt_completion(enc, *_preference_side(enc, records, config, field), True)
            for name, field in (
                ("chosen", config.chosen_field),
                ("rejected", config.rejected_field),
            )
        }
    else:
        if fmt == "text":
            prompts, completions = [""] * len(records), [str(r[config.text_field]) for r in records]
            has_bos = [False] * len(records)
        elif fmt == "chat":
            rendered = [
                enc.render_chat(r[config.messages_field], f"row {i}") for i, r in enumerate(records)
            ]
            prompts = [p for p, _, _ in rendered]
            completions = [c for _, c, _ in rendered]
            has_bos = [b for _, _, b in rendered]
        else:
            prompts = [str(r[config.prompt_field]) for r in records]
            completions = [str(r[config.completion_field]) for r in records]
            has_bos = [False] * len(records)
        streams = {
            "main": _prompt_completion(enc, prompts, completions, has_bos, objective == "sft")
        }
    data = TokenizedData(streams, source)
    data = _truncate(data, max_length) if not config.packing else data
    if data.is_preference:
        data = _drop_identical_pairs(data)
    data = _drop_untrainable(data)
    if config.packing:
        data = TokenizedData({"main": pack(data.streams["main"], max_length)}, source)
    return data


def _preference_side(
    enc: RowTokenizer, records: list[dict[str, Any]], config: DataConfig, field: str
) -> tuple[list[str], list[str], list[bool]]:
    """Prompts, completions and has-BOS flags of one side of preference rows. A side given as a
    message list (e.g. ultrafeedback_binarized) is rendered as chat, its last turn the reply."""
    prompts, completions, has_bos = [], [], []
    for i, r in enumerate(records):
        value = r[field]
        if isinstance(value, list):
            prompt, completion, bos = enc.render_chat(value, f"row {i} {field}")
        elif config.prompt_field in r:
            prompt, completion, bos = str(r[config.prompt_field]), str(value), False
        else:
            raise ValueError(
                f"row {i}: preference rows with text {field!r} need a {config.prompt_field!r} "
                f"column (found {sorted(r)}); or give {field!r} as a list of chat messages"
            )
        prompts.append(prompt)
        completions.append(completion)
        has_bos.append(bos)
    return prompts, completions, has_bos


def _prompt_completion(
    enc: RowTokenizer,
    prompts: list[str],
    completions: list[str],
    has_bos: list[bool],
    completion_only: bool,
) -> TokenSequences:
    prompt_ids = enc.encode(prompts)
    completion_ids = enc.encode(completions)
    ids, masks = [], []
    for p, c, bos in zip(prompt_ids, completion_ids, has_bos):
        head = ([] if bos else enc.bos) + p
        tail = c + enc.eos
        seq = torch.tensor(head + tail, dtype=torch.long)
        mask = torch.zeros(len(seq), dtype=torch.bool)
        # An empty completion (or text) has nothing to learn: no targets, so the row is
        # dropped, rather than trained to answer with EOS alone.
        if c:
            mask[len(head) if completion_only else 1 :] = True
        mask[0] = False
        ids.append(seq)
        masks.append(mask)
    return TokenSequences(ids, masks)


def _refuse_missing_values(records: list[dict[str, Any]], fields: list[str], source: str) -> None:
    """Refuse rows whose needed field is missing or null (``str(None)`` is not training text)."""
    bad = [(i, name) for i, r in enumerate(records) for name in fields if r.get(name) is None]
    if bad:
        first_row, first_field = bad[0]
        raise ValueError(
            f"{len(bad)} value(s) in {source or 'the data'} are missing or null (first: row "
            f"{first_row}, {first_field!r}); fill or remove those rows"
        )


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
