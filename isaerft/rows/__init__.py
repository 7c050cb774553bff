"""The row pipeline shared by training, the audit and export: read, validate, render,
tokenise, batch.

* :mod:`~isaerft.rows.files`: :func:`load_rows` (a ``datasets.Dataset``, what training reads)
  and :func:`read_rows` (plain dicts in file order, what the audit reads; same sources).
* :mod:`~isaerft.rows.render`: format detection, null checks, rendering (chat rows through the
  tokenizer's chat template) and :class:`RowEncoder` (``<bos> prompt completion <eos>`` ids
  with the prompt length, for completion-only loss and scoring).
* :mod:`~isaerft.rows.batch`: right-padded batches with attention and completion masks.
"""

from isaerft.rows.batch import completion_mask, padded_batches, right_pad, token_logprobs
from isaerft.rows.files import LOCAL_BUILDERS, load_rows, read_rows
from isaerft.rows.render import (
    DEFAULT_FIELDS,
    FORMAT_COLUMNS,
    ROW_FORMATS,
    EncodedRow,
    FieldNames,
    RenderedRow,
    RowEncoder,
    RowFields,
    columns,
    refuse_missing_values,
    render_chat,
    render_row,
    row_format,
    split_row,
)

__all__ = [
    "DEFAULT_FIELDS",
    "FORMAT_COLUMNS",
    "LOCAL_BUILDERS",
    "ROW_FORMATS",
    "EncodedRow",
    "FieldNames",
    "RenderedRow",
    "RowEncoder",
    "RowFields",
    "columns",
    "completion_mask",
    "load_rows",
    "padded_batches",
    "read_rows",
    "refuse_missing_values",
    "render_chat",
    "render_row",
    "right_pad",
    "row_format",
    "split_row",
    "token_logprobs",
]
