"""Rows to token ids: format detection, null checks, rendering (chat template) and encoding.

Every consumer turns a row into ``<bos> prompt completion <eos>`` the same way, so the ids the
audit scores for a row are the ids training trained on. Chat rows (a ``messages`` list whose
last message is the assistant's reply) are rendered with the tokenizer's chat template when it
has one, else as the plain ``User:/Assistant:`` lines of the model organism's prompt format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

FORMAT_COLUMNS = {
    "text": ("text_field",),
    "prompt_completion": ("prompt_field", "completion_field"),
    "chat": ("messages_field",),
    "preference": ("chosen_field", "rejected_field"),
}
"""The field options (attributes of :class:`RowFields`) each row format needs."""
ROW_FORMATS = ("chat", "prompt_completion", "text")
"""Non-preference formats, in the order ``auto`` detection tries them."""
# Plain "User:/Assistant:" rendering for tokenizers without a chat template; it matches the
# model organism's prompt format.
_FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


class FieldNames(Protocol):
    """Column names of each format (``DataConfig`` of a training recipe is one)."""

    @property
    def text_field(self) -> str: ...
    @property
    def prompt_field(self) -> str: ...
    @property
    def completion_field(self) -> str: ...
    @property
    def messages_field(self) -> str: ...
    @property
    def chosen_field(self) -> str: ...
    @property
    def rejected_field(self) -> str: ...


@dataclass(frozen=True)
class RowFields:
    """The default column names (those of a recipe's ``data`` section)."""

    text_field: str = "text"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str = "messages"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


DEFAULT_FIELDS = RowFields()


class RenderedRow(NamedTuple):
    """A row as text: the prompt, the completion, and whether the prompt already holds the
    BOS token (a chat template writes it)."""

    prompt: str
    completion: str
    has_bos: bool = False


@dataclass(frozen=True)
class EncodedRow:
    """A row's token ids: ``prompt_length`` leading ids are prompt (``<bos>`` included), then
    ``completion_length`` completion ids, then the EOS if appended."""

    ids: list[int]
    prompt_length: int
    completion_length: int


def columns(fmt: str, fields: FieldNames = DEFAULT_FIELDS) -> list[str]:
    """The column names a row of format ``fmt`` needs."""
    return [getattr(fields, attr) for attr in FORMAT_COLUMNS[fmt]]


def row_format(row: dict[str, Any], where: str, fields: FieldNames = DEFAULT_FIELDS) -> str:
    """The format of one row, tried in :data:`ROW_FORMATS` order (as ``auto`` detection)."""
    for fmt in ROW_FORMATS:
        if all(c in row for c in columns(fmt, fields)):
            return fmt
    raise ValueError(
        f"{where}: the row has columns {sorted(row)}; it needs 'prompt' + 'completion', "
        "'text' or 'messages'"
    )


def refuse_missing_values(
    records: Sequence[dict[str, Any]], fields: Sequence[Sequence[str]], source: str
) -> None:
    """Refuse rows whose needed field (``fields[i]`` for row ``i``) is missing or null
    (``str(None)`` is not training text)."""
    bad = [(i, name) for i, r in enumerate(records) for name in fields[i] if r.get(name) is None]
    if bad:
        first_row, first_field = bad[0]
        raise ValueError(
            f"{len(bad)} value(s) in {source or 'the data'} are missing or null (first: row "
            f"{first_row}, {first_field!r}); fill or remove those rows"
        )


def render_chat(messages: Any, where: str, tokenizer: Any = None) -> RenderedRow:
    """A message list whose last message is the assistant's reply (the only turn trained):
    the history through ``tokenizer``'s chat template (with the generation prompt) if it has
    one, else as ``User:/Assistant:`` lines; the reply is the completion."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: chat rows need a non-empty list of messages")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") is None or m.get("content") is None:
            raise ValueError(f"{where}: each message needs 'role' and 'content', got {m!r}")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the last message must be the assistant's reply to train on")
    history, reply = messages[:-1], str(messages[-1]["content"])
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        return RenderedRow(str(prompt), reply, True)
    lines = [
        f"{_FALLBACK_ROLES.get(m['role'], str(m['role']).title())}: {m['content']}" for m in history
    ]
    return RenderedRow("\n".join([*lines, "Assistant:"]), " " + reply, False)


def render_row(
    row: dict[str, Any],
    fmt: str,
    where: str,
    tokenizer: Any = None,
    fields: FieldNames = DEFAULT_FIELDS,
) -> RenderedRow:
    """A ``chat``, ``prompt_completion`` or ``text`` row as text (text rows: all completion)."""
    if fmt == "text":
        return RenderedRow("", str(row[fields.text_field]))
    if fmt == "chat":
        return render_chat(row[fields.messages_field], where, tokenizer)
    return RenderedRow(str(row[fields.prompt_field]), str(row[fields.completion_field]))


def split_row(row: dict[str, Any], where: str, tokenizer: Any = None) -> tuple[str, str]:
    """``(prompt, completion)`` of a row in any format, with the default column names."""
    prompt, completion, _ = render_row(row, row_format(row, where), where, tokenizer)
    return prompt, completion


class RowEncoder:
    """Encodes rendered rows with the model's tokenizer: ``<bos> prompt completion <eos>``."""

    def __init__(self, tokenizer: Any, prepend_bos: bool = True, append_eos: bool = True) -> None:
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

    def render(self, row: dict[str, Any], fmt: str, where: str, fields: FieldNames) -> RenderedRow:
        """:func:`render_row` with this encoder's tokenizer (its chat template)."""
        return render_row(row, fmt, where, self.tokenizer, fields)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens (an empty text has none)."""
        out: list[list[int]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t]
        if todo:
            encoded = self.tokenizer([texts[i] for i in todo], add_special_tokens=False)
            for i, ids in zip(todo, encoded["input_ids"]):
                out[i] = list(ids)
        return out

    def encode_rows(self, rendered: Sequence[RenderedRow]) -> list[EncodedRow]:
        """Each rendered row as ``<bos> prompt completion <eos>`` token ids (no ``<bos>`` of
        ours when the prompt holds one already)."""
        prompts = self.encode([r.prompt for r in rendered])
        completions = self.encode([r.completion for r in rendered])
        out = []
        for r, p, c in zip(rendered, prompts, completions):
            head = ([] if r.has_bos else self.bos) + p
            out.append(EncodedRow(head + c + self.eos, len(head), len(c)))
        return out
