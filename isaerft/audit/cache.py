"""What the audit computes from the trusted rows alone, kept across audits of one trusted set.

Two steps of an audit read the trusted rows and nothing that changes between audits: their
SAE codes (:func:`~isaerft.audit.activations.collect_codes`, about 22 s of a 75 s audit on the
organism's 16,000 trusted rows, and the bulk of an audit's forward passes on a large model) and
the association search's null (:func:`~isaerft.audit.association.search_associations`: the
largest pair score of 100 random splits of the trusted rows, about 15 s). Columns that only the
audited rows make eligible never score on a trusted split, so that null is the same for every
dataset audited against one trusted set.

Each is kept under a key that hashes exactly what it is computed from: for codes, the model's
weights and config, each SAE's weights and hook, every row's tokens and the batch size; for the
null, the trusted rows' 0/1 firing matrices at every site (restricted to the columns a split can
score) and the search's settings. A changed row, weight or setting is another key, so a kept
result never stands in for another. Each process keeps the latest ones in memory (several
audits in one Python session; the audited rows' codes too, so that a dataset audited again
reads them back); :class:`AuditCache` with a folder also keeps the trusted ones on disk
(``isaerft audit --cache-dir DIR``): a null as ``association-null-<key>.json``, codes as
``codes-<key>.safetensors``, each written atomically. A file there that does not read back as
its key's result is left as it is and not used.
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
from safetensors import SafetensorError, safe_open

from isaerft._io import check_format, read_versioned_json, write_json, write_safetensors
from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.backends import weights_fingerprint
from isaerft.site import sae_fingerprint

FORMAT = "isaerft-audit-cache"
VERSION = 1
"""Bump when a kept result's computation changes for the same inputs (every one then misses)."""
MEMORY_NULLS = 32
"""Nulls each process keeps in memory (a null is ``draws`` floats)."""
MEMORY_CODES = 2
"""Code sets each process keeps in memory (the trusted rows' and one audited set's)."""
_NULLS: OrderedDict[str, list[float]] = OrderedDict()
_CODES: OrderedDict[str, dict[str, SiteCodes]] = OrderedDict()
_FIELDS = ("tok", "lat", "val")
_FORMAT_CHECK: dict[str, Any] = {
    "kind": FORMAT, "version": VERSION, "what": "a kept audit result", "exact": True,
    "keys": ("format", "version"),
}  # fmt: skip


def null_key(matrices: Sequence[tuple[str, torch.Tensor, torch.Tensor]], **settings: Any) -> str:
    """The key of a null computed from ``(hook, prompt, completion)`` 0/1 trusted firing
    matrices (the columns a split can score) and the search's ``settings``."""
    digest = _digest("association-null", settings)
    for hook, prompt, completion in matrices:
        digest.update(hook.encode())
        for m in (prompt, completion):
            digest.update(str(tuple(m.shape)).encode())
            digest.update(m.bool().contiguous().numpy().tobytes())
    return digest.hexdigest()


def codes_key(model: Any, saes: Sequence[Any], data: AuditData, batch_size: int) -> str:
    """The key of the SAE codes of ``data`` on ``model`` (its base model) at each SAE's hook."""
    base = getattr(model, "model", model)
    # The device's kernels round differently: codes are kept per device type.
    device = next(base.parameters()).device.type
    digest = _digest("codes", {"batch_size": batch_size, "device": device})
    digest.update(weights_fingerprint(base).encode())
    for sae in saes:
        digest.update(str(sae.cfg.metadata.hook_name).encode())
        digest.update(sae_fingerprint(sae).encode())
    for ids in data.ids:
        digest.update(ids.to(torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _digest(kind: str, settings: dict[str, Any]) -> Any:
    head = {"format": FORMAT, "version": VERSION, "kind": kind, **settings}
    return hashlib.sha256(json.dumps(head, sort_keys=True).encode())


@dataclass(frozen=True)
class AuditCache:
    """Where kept results live: this process's memory and, with ``folder``, that folder."""

    folder: Path | None = None

    def path(self, name: str) -> Path | None:
        """The file called ``name`` in the folder (``None`` without a folder)."""
        return self.folder / name if self.folder is not None else None

    def null(self, key: str, draws: int, compute: Callable[[], list[float]]) -> list[float]:
        """``key``'s kept null of ``draws`` values, or ``compute()``; kept either way (a null
        found in memory also goes to the folder)."""

        def write(path: Path, values: list[float]) -> None:
            write_json(path, {"format": FORMAT, "version": VERSION, "key": key, "null": values})

        values = self._kept(
            _NULLS, MEMORY_NULLS, key, f"association-null-{key}.json",
            lambda path: _read_null(path, key, draws), compute, write,
        )  # fmt: skip
        return list(values)

    def codes(self, key: str, compute: Callable[[], dict[str, SiteCodes]]) -> dict[str, SiteCodes]:
        """``key``'s kept codes, or ``compute()``; kept either way."""
        return self._kept(
            _CODES, MEMORY_CODES, key, f"codes-{key}.safetensors",
            lambda path: _read_codes(path, key), compute,
            lambda path, codes: _write_codes(path, key, codes),
        )  # fmt: skip

    def _kept(
        self,
        memory: OrderedDict[str, Any],
        size: int,
        key: str,
        name: str,
        read: Callable[[Path], Any],
        compute: Callable[[], Any],
        write: Callable[[Path, Any], None],
    ) -> Any:
        """From memory, else the folder's file ``name`` (``read`` gives ``None`` when it is not
        ``key``'s), else ``compute()``; then remembered, and written where no file is."""
        path = self.path(name)
        value = memory.get(key)
        if value is None and path is not None and path.is_file():
            value = read(path)
        if value is None:
            value = compute()
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > size:
            memory.popitem(last=False)
        if path is not None and not path.exists():
            write(path, value)
        return value


def _read_null(path: Path, key: str, draws: int) -> list[float] | None:
    """The null in ``path`` when it is ``key``'s, ``draws`` finite values; else ``None``."""
    try:
        kept = read_versioned_json(path, **_FORMAT_CHECK)
    except (OSError, ValueError):
        return None
    values = kept.get("null")
    if kept.get("key") != key or not isinstance(values, list) or len(values) != draws:
        return None
    if not all(type(v) in (int, float) and math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def _write_codes(path: Path, key: str, codes: dict[str, SiteCodes]) -> None:
    sites = list(codes.values())
    if not sites:
        return
    tensors = {"token_row": sites[0].token_row, "token_pos": sites[0].token_pos}
    for i, site in enumerate(sites):
        tensors.update({f"site{i}.{f}": getattr(site, f) for f in _FIELDS})
    described = [{"hook_name": s.hook_name, "d_sae": s.d_sae, "n_rows": s.n_rows} for s in sites]
    meta = {"format": FORMAT, "version": str(VERSION), "key": key, "sites": json.dumps(described)}
    write_safetensors(path, tensors, meta)


def _read_codes(path: Path, key: str) -> dict[str, SiteCodes] | None:
    """The codes in ``path`` when they are ``key``'s and hang together; else ``None``."""
    try:
        with safe_open(str(path), "pt") as handle:
            meta = check_format(handle.metadata() or {}, path, **_FORMAT_CHECK)
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if meta.get("key") != key:
            return None
        described = json.loads(meta["sites"])
        out = {}
        row, pos = tensors["token_row"], tensors["token_pos"]
        for i, site in enumerate(described):
            tok, lat, val = (tensors[f"site{i}.{f}"] for f in _FIELDS)
            hook, d_sae, n_rows = str(site["hook_name"]), int(site["d_sae"]), int(site["n_rows"])
            out[hook] = SiteCodes(hook, d_sae, row, pos, tok, lat, val, n_rows)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    return out if out and all(_coherent(c) for c in out.values()) else None


def _coherent(c: SiteCodes) -> bool:
    """Whether the codes' parts fit each other (indices within range, one length per part)."""
    lengths_ok = c.token_row.numel() == c.token_pos.numel() and (
        c.tok.numel() == c.lat.numel() == c.val.numel()
    )
    if not lengths_ok or c.tok.dtype.is_floating_point or c.lat.dtype.is_floating_point:
        return False
    if c.tok.numel() == 0:
        return True
    in_range = int(c.tok.max()) < c.token_row.numel() and int(c.lat.max()) < c.d_sae
    rows_ok = c.token_row.numel() == 0 or int(c.token_row.max()) < c.n_rows
    return in_range and rows_ok and int(c.tok.min()) >= 0 and int(c.lat.min()) >= 0


def forget() -> None:
    """Drop what this process keeps in memory (the folder's files stay)."""
    _NULLS.clear()
    _CODES.clear()
