"""Reading rows: local files (JSONL, JSON, CSV, Parquet, text) and Hugging Face hub datasets."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

from isaerft._io import iter_jsonl, read_json

LOCAL_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}
"""The ``datasets`` builder that reads each local file extension."""


def load_rows(source: str | Path, *, split: str = "train", limit: int | None = None) -> Any:
    """The rows of ``source`` as a ``datasets.Dataset`` (what training reads).

    Local files are read with the matching ``datasets`` builder; anything else that does not
    look like a file is a Hugging Face hub dataset name, read at ``split``. ``limit`` keeps
    the first rows.
    """
    import datasets

    source = str(source)
    local = Path(source).expanduser()
    looks_local = local.suffix in LOCAL_BUILDERS or source.startswith((".", "/", "~"))
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        rows = _load(datasets, source, local, looks_local, split)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    if len(rows) == 0:
        raise ValueError(f"dataset {source} is empty; it needs at least one row")
    return rows


def read_rows(
    path: str | Path, *, split: str = "train", limit: int | None = None
) -> list[dict[str, Any]]:
    """The rows of ``path`` as dicts, one per row in file order (what the audit reads).

    A ``.json`` list of objects, or any other local file as JSON lines (one object per line),
    is read as it is, so its rows may mix formats; CSV, Parquet, text files and hub dataset
    names go through :func:`load_rows`, as training reads them.
    """
    path_ = Path(path).expanduser()
    by_datasets = path_.suffix in (".csv", ".parquet", ".txt")
    looks_local = path_.suffix or str(path).startswith((".", "/", "~"))
    if by_datasets or not (looks_local or path_.exists()):
        return [dict(r) for r in load_rows(path, split=split, limit=limit)]
    if not path_.is_file():
        raise FileNotFoundError(f"dataset {path_} not found; pass a .jsonl file of rows")
    if path_.suffix == ".json":
        rows = read_json(path_)
        if not isinstance(rows, list):
            raise ValueError(f"{path_} must hold a JSON list of row objects")
    else:
        rows = [row for _, row in iter_jsonl(path_)]
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        raise ValueError(f"dataset {path_} has no rows")
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path_}: every row must be a JSON object")
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
