"""Prefix caching: run the frozen layers before the first spliced hook once, not every step.

Nothing upstream of the first spliced hook depends on the trainable components, so the
activation there (and the SAE codes of that site) are a pure function of the tokens. A
:class:`PrefixCache` stores them for a list of token sequences; training then runs only the
downstream layers with TransformerLens' ``start_at_layer``. A :class:`PrefixCacheStore` keys
caches by model prefix weights + SAE fingerprint + tokens, in memory and optionally on disk
(safetensors), so repeated runs on the same data (e.g. an audit's null runs) reuse them. A
cache on disk records the sha256 of its tensors file: a corrupted or truncated one is rebuilt
(with a warning), never used.

Pad positions are not cached: they get a zero activation and zero latents, which can only
change outputs at pad positions, which never carry loss.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from isaerft._io import (
    read_safetensors,
    read_versioned_json,
    sha256_file,
    write_json,
    write_safetensors,
)
from isaerft.backends import supports_start_at_layer, weights_fingerprint
from isaerft.rows import right_pad
from isaerft.site import sae_fingerprint

if TYPE_CHECKING:
    from isaerft.model import ISaeRFTModel

CACHE_FORMAT = "isaerft.prefix_cache"
CACHE_VERSION = 2  # 2: meta.json records the tensors file's sha256
TENSORS_FILE = "prefix.safetensors"
META_FILE = "meta.json"
_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class PrefixBoundary:
    """Where the cached prefix ends.

    Attributes:
        mode: ``resid_pre`` (cache ``blocks.L.hook_resid_pre``; the site there reads the
            cached codes), ``resid_post`` (cache ``blocks.L.hook_resid_post``, apply that
            site by hand, continue at block ``L + 1``) or ``block`` (cache the input of block
            ``L``; the sites inside it encode as usual).
        layer: the block ``L`` of the first spliced hook.
        site_hook: the site whose SAE codes are cached, if any.
    """

    mode: str
    layer: int
    site_hook: str | None

    @property
    def start_at_layer(self) -> int:
        """The first block that still runs during training."""
        return self.layer + 1 if self.mode == "resid_post" else self.layer


def find_boundary(model: ISaeRFTModel) -> PrefixBoundary:
    """The cache boundary for ``model``'s sites; ``ValueError`` if a site is outside a block
    or the model cannot start at a layer (a ``TransformerBridge``)."""
    if not supports_start_at_layer(model.model):
        raise ValueError(
            "prefix caching runs the layers after the cached prefix with start_at_layer, which a "
            "TransformerBridge does not have; set trainer.prefix_cache=false"
        )
    parsed = []
    for hook in model.hook_names:
        match = _BLOCK_HOOK.match(hook)
        if match is None:
            raise ValueError(
                f"prefix caching needs every spliced hook inside a block (blocks.L.*), but "
                f"{hook!r} is not; set trainer.prefix_cache=false"
            )
        parsed.append((int(match.group(1)), match.group(2), hook))
    if model.model.cfg.positional_embedding_type == "shortformer":
        raise ValueError("prefix caching does not support shortformer positional embeddings")
    layer = min(p[0] for p in parsed)
    first = [(name, hook) for lay, name, hook in parsed if lay == layer]
    if len(first) == 1 and first[0][0] == "hook_resid_post":
        return PrefixBoundary("resid_post", layer, first[0][1])
    pre = [hook for name, hook in first if name == "hook_resid_pre"]
    if pre:
        return PrefixBoundary("resid_pre", layer, pre[0])
    return PrefixBoundary("block", layer, None)


class PrefixCache:
    """Boundary activations (and SAE codes) for a fixed list of token sequences.

    Activations are stored flattened over the real tokens (``resid[offsets[i]:offsets[i+1]]``
    is row ``i``); SAE codes in CSR form, since few latents are active per token.
    """

    def __init__(
        self,
        boundary: PrefixBoundary,
        resid: torch.Tensor,
        offsets: torch.Tensor,
        codes: dict[str, torch.Tensor] | None,
        d_sae: int | None,
        key: str,
    ) -> None:
        self.boundary, self.resid, self.offsets = boundary, resid, offsets
        self.codes, self.d_sae, self.key = codes, d_sae, key

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the cache, in bytes."""
        tensors = [self.resid, self.offsets, *(self.codes or {}).values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @classmethod
    def build(
        cls,
        model: ISaeRFTModel,
        sequences: Sequence[torch.Tensor],
        *,
        batch_size: int = 16,
        store_codes: bool = True,
        key: str | None = None,
    ) -> PrefixCache:
        """Run the frozen prefix of ``model`` over ``sequences`` (1-D token tensors)."""
        if not sequences:
            raise ValueError("PrefixCache.build needs at least one sequence")
        boundary = find_boundary(model)
        base = model.model
        device = next(base.parameters()).device
        site = model.site(boundary.site_hook) if boundary.site_hook and store_codes else None
        chunks, code_chunks = [], []
        with torch.no_grad():
            for start in range(0, len(sequences), batch_size):
                tokens, mask = right_pad(sequences[start : start + batch_size])
                resid = base(
                    tokens.to(device),
                    attention_mask=mask.long().to(device),
                    stop_at_layer=boundary.start_at_layer,
                )
                real = resid[mask.to(device)]
                chunks.append(real.cpu())
                if site is not None:
                    code_chunks.append(_to_csr(site.sae.encode(real).cpu()))
        lengths = torch.tensor([0] + [len(s) for s in sequences], dtype=torch.long)
        codes = _stack_csr(code_chunks) if site is not None else None
        d_sae = int(site.sae.cfg.d_sae) if site is not None else None
        return cls(boundary, torch.cat(chunks), lengths.cumsum(0), codes, d_sae, key or "")

    def gather(self, rows: Sequence[int], length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Right-padded ``(resid, latents)`` of shape ``(len(rows), length, ...)`` for ``rows``."""
        n_rows = torch.tensor([int(self.offsets[i + 1] - self.offsets[i]) for i in rows])
        tok = torch.cat(
            [torch.arange(int(self.offsets[i]), int(self.offsets[i + 1])) for i in rows]
        )
        row_of = torch.repeat_interleave(torch.arange(len(rows)), n_rows)
        pos_of = torch.cat([torch.arange(int(n)) for n in n_rows])
        resid = torch.zeros((len(rows), length, self.resid.shape[-1]), dtype=self.resid.dtype)
        resid[row_of, pos_of] = self.resid[tok]
        if self.codes is None or self.d_sae is None:
            return resid, None
        crow, col, val = self.codes["crow"], self.codes["col"], self.codes["val"]
        counts = crow[tok + 1] - crow[tok]
        owner = torch.repeat_interleave(torch.arange(len(tok)), counts)
        first = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        nz = crow[tok][owner] + torch.arange(int(counts.sum())) - first
        latents = torch.zeros((len(rows), length, self.d_sae), dtype=val.dtype)
        latents[row_of[owner], pos_of[owner], col[nz].long()] = val[nz]
        return resid, latents

    def save(self, path: str | Path) -> Path:
        """Write ``prefix.safetensors`` and ``meta.json`` (last, marking a complete cache and
        recording the tensors file's sha256)."""
        path = Path(path)
        tensors = {"resid": self.resid, "offsets": self.offsets, **(self.codes or {})}
        write_safetensors(path / TENSORS_FILE, tensors, metadata={"format": CACHE_FORMAT})
        meta = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_VERSION,
            "key": self.key,
            "boundary": asdict(self.boundary),
            "d_sae": self.d_sae,
            "tensors_sha256": sha256_file(path / TENSORS_FILE),
        }
        write_json(path / META_FILE, meta)
        return path

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> PrefixCache:
        """Read a cache written by :meth:`save`, checked against its recorded sha256 (and
        ``key``, when given).

        Raises:
            FileNotFoundError: no ``meta.json`` in ``path``.
            CorruptPrefixCacheError: anything else wrong: another format or key, tensors
                that are not the ones saved (overwritten, truncated), unreadable files.
        """
        path = Path(path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path} holds no prefix cache ({META_FILE} missing)")
        try:
            meta, tensors = _read_checked(path, key)
            codes = {k: tensors[k] for k in ("crow", "col", "val")} if "crow" in tensors else None
            boundary = PrefixBoundary(**meta["boundary"])
            return cls(
                boundary, tensors["resid"], tensors["offsets"], codes, meta["d_sae"], meta["key"]
            )
        except (KeyError, TypeError) as err:  # the hash matched, but the content is not ours
            raise CorruptPrefixCacheError(f"{path}: missing or malformed entry {err}") from err


class CorruptPrefixCacheError(ValueError):
    """A prefix cache on disk that is not what its ``meta.json`` says it is."""


def _read_checked(path: Path, key: str | None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        meta = read_versioned_json(
            path / META_FILE,
            kind=CACHE_FORMAT,
            version=CACHE_VERSION,
            what="a prefix cache",
            exact=True,
        )
    except (OSError, ValueError) as err:
        raise CorruptPrefixCacheError(f"{path / META_FILE} is unreadable: {err}") from err
    if key is not None and meta.get("key") != key:
        raise CorruptPrefixCacheError(f"{path / META_FILE} was written for another cache key")
    tensors_path = path / TENSORS_FILE
    try:
        actual = sha256_file(tensors_path)
    except OSError as err:
        raise CorruptPrefixCacheError(f"{tensors_path} is unreadable: {err}") from err
    if actual != meta.get("tensors_sha256"):
        raise CorruptPrefixCacheError(
            f"{tensors_path} is not the file saved with {META_FILE} (sha256 differs: "
            "overwritten or truncated)"
        )
    try:
        return meta, read_safetensors(tensors_path)
    except Exception as err:  # safetensors' own error types; the hash matched, so rare
        raise CorruptPrefixCacheError(f"{tensors_path} is unreadable: {err}") from err


def _to_csr(dense: torch.Tensor) -> dict[str, torch.Tensor]:
    """CSR parts of a 2-D tensor: row pointers, column indices and values of its non-zeros."""
    rows, cols = dense.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=dense.shape[0])
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return {"crow": crow, "col": cols.to(torch.int32), "val": dense[rows, cols]}


def _stack_csr(chunks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    crows, cols, vals, offset = [torch.zeros(1, dtype=torch.long)], [], [], 0
    for chunk in chunks:
        crows.append(chunk["crow"][1:] + offset)
        offset += int(chunk["crow"][-1])
        cols.append(chunk["col"])
        vals.append(chunk["val"])
    return {"crow": torch.cat(crows), "col": torch.cat(cols), "val": torch.cat(vals)}


def cache_key(model: ISaeRFTModel, sequences: Sequence[torch.Tensor], store_codes: bool) -> str:
    """A sha256 over the prefix weights, the cached site's SAE, the boundary and the tokens."""
    boundary = find_boundary(model)
    digest = hashlib.sha256(f"{CACHE_FORMAT}/{CACHE_VERSION}/{boundary}".encode())
    digest.update(_prefix_weights_fingerprint(model, boundary).encode())
    if boundary.site_hook is not None and store_codes:
        digest.update(sae_fingerprint(model.site(boundary.site_hook).sae).encode())
    for seq in sequences:
        digest.update(seq.to(torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _prefix_weights_fingerprint(model: ISaeRFTModel, boundary: PrefixBoundary) -> str:
    kept = ("embed.", "pos_embed.", *(f"blocks.{i}." for i in range(boundary.start_at_layer)))
    return weights_fingerprint(model.model, kept)


class PrefixCacheStore:
    """Prefix caches keyed by model prefix + SAE + tokens: in memory, and on disk if a
    ``cache_dir`` is given. Pass one store to several :func:`isaerft.training.train` calls to
    share caches between runs on the same data."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, PrefixCache] = {}

    def get(
        self,
        model: ISaeRFTModel,
        sequences: Sequence[torch.Tensor],
        *,
        batch_size: int = 16,
        store_codes: bool = True,
    ) -> PrefixCache:
        """The cache for ``sequences`` on ``model``: from memory, disk, or built (and saved)."""
        key = cache_key(model, sequences, store_codes)
        if key in self._memory:
            return self._memory[key]
        folder = self.cache_dir / key[:32] if self.cache_dir is not None else None
        cache = _load_or_none(folder, key) if folder is not None else None
        if cache is None:
            cache = PrefixCache.build(
                model, sequences, batch_size=batch_size, store_codes=store_codes, key=key
            )
            if folder is not None:
                cache.save(folder)
        self._memory[key] = cache
        return cache


def _load_or_none(folder: Path, key: str) -> PrefixCache | None:
    """The cache saved in ``folder``; ``None`` (with a warning if it was corrupt) to rebuild."""
    if not (folder / META_FILE).is_file():
        return None
    try:
        return PrefixCache.load(folder, key)
    except CorruptPrefixCacheError as err:
        warnings.warn(f"prefix cache not used, rebuilding it: {err}", UserWarning, stacklevel=4)
        return None


def run_from_prefix(
    model: ISaeRFTModel, boundary: PrefixBoundary, batch: dict[str, Any], *, enabled: bool = True
) -> torch.Tensor:
    """Logits from cached boundary activations: only the downstream layers run.

    With ``enabled=False`` the components are bypassed (the base model's logits).
    """
    resid, latents, mask = batch["resid"], batch.get("latents"), batch["attention_mask"]
    start = boundary.start_at_layer
    with nullcontext() if enabled else model.disabled():
        if boundary.mode == "resid_post":
            if enabled:
                resid = model.site(boundary.site_hook)(resid, latents)  # type: ignore[arg-type]
            return model(resid, start_at_layer=start, attention_mask=mask)  # type: ignore[no-any-return]
        cached = (
            {boundary.site_hook: latents} if latents is not None and boundary.site_hook else None
        )
        return model(resid, start_at_layer=start, attention_mask=mask, latents=cached)  # type: ignore[no-any-return]
