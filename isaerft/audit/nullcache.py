"""The association search's trusted null, kept across audits of one trusted set.

The null (:func:`isaerft.audit.association.search_associations`) is the largest pair score
of 100 random splits of the trusted rows: most of the search's time (about 15 s of a 75 s
audit on the organism) and a function of the trusted rows' firing alone, not of the audited
rows. Columns that only the audited rows make eligible never score on a trusted split, so the
null is the same for every dataset audited against one trusted set (with one model, SAE, split
size and search settings).

It is kept under a key that hashes exactly what it is computed from: the trusted rows' 0/1
firing matrices at every site (restricted to the columns a trusted split can score) and the
search's settings. A changed trusted row, SAE or setting is another key, so a kept null can
never stand in for another. Each process keeps the last :data:`MEMORY_ENTRIES` in memory
(several audits in one Python session); :class:`NullCache` with a folder also keeps them on
disk, one small JSON file per key (``isaerft audit --null-cache DIR``), written atomically.
A file there that does not read back as this key's null is left as it is and not used.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isaerft._io import read_json, write_json

FORMAT = "isaerft-association-null"
VERSION = 1
"""Bump when the null's computation changes for the same inputs (every kept null then misses)."""
MEMORY_ENTRIES = 32
"""Nulls each process keeps in memory (a null is ``draws`` floats)."""
_MEMORY: OrderedDict[str, list[float]] = OrderedDict()


def null_key(matrices: Sequence[tuple[str, torch.Tensor, torch.Tensor]], **settings: Any) -> str:
    """The key of a null computed from ``(hook, prompt, completion)`` 0/1 trusted firing
    matrices (the columns a split can score) and the search's ``settings``."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "version": VERSION, **settings}).encode())
    for hook, prompt, completion in matrices:
        digest.update(hook.encode())
        for m in (prompt, completion):
            digest.update(str(tuple(m.shape)).encode())
            digest.update(m.bool().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class NullCache:
    """Where nulls are kept: this process's memory and, with ``folder``, that folder."""

    folder: Path | None = None

    def path(self, key: str) -> Path | None:
        """The file of ``key``'s null (``None`` without a folder)."""
        return self.folder / f"association-null-{key}.json" if self.folder else None

    def get(self, key: str, draws: int) -> list[float] | None:
        """The kept null of ``key`` (``draws`` values), or ``None``."""
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return list(_MEMORY[key])
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        values = _read(path, key, draws)
        if values is not None:
            _remember(key, values)
        return values

    def put(self, key: str, values: list[float]) -> None:
        """Keep ``values`` as ``key``'s null (a file already there is never replaced)."""
        _remember(key, values)
        path = self.path(key)
        if path is not None and not path.exists():
            write_json(path, {"format": FORMAT, "version": VERSION, "key": key, "null": values})

    def null(self, key: str, draws: int, compute: Callable[[], list[float]]) -> list[float]:
        """``key``'s kept null, or ``compute()``; kept under ``key`` either way (a null
        found in memory also goes to the folder)."""
        values = self.get(key, draws)
        if values is None:
            values = compute()
        self.put(key, values)
        return values


def _remember(key: str, values: list[float]) -> None:
    _MEMORY[key] = list(values)
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)


def _read(path: Path, key: str, draws: int) -> list[float] | None:
    """The null in ``path`` when it is ``key``'s, ``draws`` finite values; else ``None``."""
    try:
        kept = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or (kept.get("format"), kept.get("version")) != (
        FORMAT,
        VERSION,
    ):
        return None
    values = kept.get("null")
    if kept.get("key") != key or not isinstance(values, list) or len(values) != draws:
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def forget() -> None:
    """Drop the nulls this process keeps in memory (the folder's files stay)."""
    _MEMORY.clear()
