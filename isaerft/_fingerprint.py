"""A sha256 over a module's named weights, kept while those weights stay the same.

Hashing a model's or an SAE's weights reads every byte of them (hundreds of megabytes for the
SAE of a 2B model); an audit asks for the same fingerprint several times. A digest is kept per
live module (weakly: a module that is freed takes its digests with it) under each weight's
storage address and in-place counter, so an in-place change (``add_`` under ``no_grad``,
``load_state_dict``) or a weight replaced by another tensor hashes again.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch

PER_MODULE = 8
"""Digests kept per live module (the latest computed)."""

_KEPT: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def weights_digest(module: torch.nn.Module, head: str, names: list[str], shapes: bool) -> str:
    """The sha256 hex digest of ``head``, then per weight of ``names`` (of
    ``module.state_dict()``) its name, its shape (with ``shapes``) and its values as float32."""
    state = module.state_dict(keep_vars=True)
    versions = tuple((n, state[n].data_ptr(), state[n]._version) for n in names)
    key = (head, shapes, versions)
    kept = _KEPT.setdefault(module, {})
    if key not in kept:
        digest = hashlib.sha256(head.encode())
        for name in names:
            tensor = state[name]
            digest.update(name.encode())
            if shapes:
                digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        kept[key] = digest.hexdigest()
        while len(kept) > PER_MODULE:
            del kept[next(iter(kept))]
    return kept[key]
