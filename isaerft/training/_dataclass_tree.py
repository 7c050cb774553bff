"""Dotted ``key=value`` overrides of a recipe's plain-dict form."""

from __future__ import annotations

from typing import Any

from isaerft.configbase import ConfigError, parse_yaml


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` override set (value parsed as YAML)."""
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = out
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                section = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"override {item!r}: {section} is a value ({child!r}), not a section"
                )
            node = child
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}") if raw != "" else None
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
