"""Results computed from a live module's weights, kept while those weights stay the same.

Hashing a model's or an SAE's weights reads every byte of them (hundreds of megabytes for the
SAE of a 2B model); an audit asks for the same fingerprint several times. A result is kept per live
module (weakly: a module that is freed takes its results with it) under each weight's storage
address and in-place counter, so an in-place change (``add_`` under ``no_grad``,
``load_state_dict``) or a weight replaced by another tensor computes it again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

import torch

PER_MODULE = 8
"""Results kept per live module (the latest ones)."""


class WeightsMemo:
    """``get(module, state, names, extra, compute)``: ``compute()`` once per state of the
    tensors ``names`` of ``state`` (``module.state_dict(keep_vars=True)``) and per ``extra``
    (whatever else the result reads: a config, which weights)."""

    def __init__(self) -> None:
        self._kept: weakref.WeakKeyDictionary[Any, dict[Hashable, str]] = (
            weakref.WeakKeyDictionary()
        )

    def get(
        self,
        module: torch.nn.Module,
        state: dict[str, torch.Tensor],
        names: list[str],
        extra: Hashable,
        compute: Callable[[], str],
    ) -> str:
        versions = tuple((n, state[n].data_ptr(), state[n]._version) for n in names)
        key = (extra, versions)
        kept = self._kept.setdefault(module, {})
        if key not in kept:
            kept[key] = compute()
            while len(kept) > PER_MODULE:
                del kept[next(iter(kept))]
        return kept[key]
