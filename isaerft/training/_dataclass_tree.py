"""Building nested config dataclasses from plain dicts, with dotted ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` override set (value parsed as YAML)."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like section.key=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else None
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def build_dataclass(cls: type[Any], data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, recursing into nested dataclass fields."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a mapping, got {type(data).__name__}: {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        nested = _dataclass_in(hints[name])
        if nested is not None and value is not None:
            value = build_dataclass(nested, value, f"{where}.{name}" if where != "recipe" else name)
        elif isinstance(value, str) and _accepts_float(hints[name]):
            value = _as_float(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"{where}: {err}") from err


def _accepts_float(hint: Any) -> bool:
    return hint is float or float in typing.get_args(hint)


def _as_float(text: str) -> float | str:
    # YAML 1.1 reads "1e-3" (no dot) as a string; numbers are what every float field wants.
    try:
        return float(text)
    except ValueError:
        return text


def _dataclass_in(hint: Any) -> type[Any] | None:
    """The dataclass type in ``X`` or ``X | None``, else ``None``."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None
