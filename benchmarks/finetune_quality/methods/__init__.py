"""The compared methods, one class and one registration each (as PEFT registers its tuners).

``METHODS`` maps a method name (as written in the result JSON) to its class and keyword
arguments; :func:`build_method` makes one from a :class:`MethodContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import HookMethod, Method, MethodContext, WeightMethod

METHODS: dict[str, tuple[type[Method], dict[str, Any]]] = {}
"""Method name -> (class, constructor keyword arguments)."""


def register(name: str, **kwargs: Any) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register the class under ``name`` with constructor ``kwargs``."""

    def add(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = (cls, kwargs)
        return cls

    return add


def build_method(name: str, ctx: MethodContext) -> Method:
    """The method ``name``, ready to train (its data-derived parts computed)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; use one of {sorted(METHODS)}")
    cls, kwargs = METHODS[name]
    method = cls(ctx, **kwargs)  # type: ignore[call-arg]
    method.prepare(ctx)
    return method


# Registration happens on import of each method's module.
from . import full_ft, ia3, isaerft_kinds, lora, loreft, steering  # noqa: E402

__all__ = [
    "METHODS",
    "HookMethod",
    "Method",
    "MethodContext",
    "WeightMethod",
    "build_method",
    "full_ft",
    "ia3",
    "isaerft_kinds",
    "lora",
    "loreft",
    "register",
    "steering",
]
