"""One small base for every config: dicts and YAML in and out, checked by type and range.

A config is a dataclass deriving from :class:`ConfigBase`. Its field annotations are the
checks: a ``bool`` field takes only ``true``/``false`` (never ``"yes please"``), an ``int``
field only integers, a ``float`` field only finite numbers (NaN and infinity are refused
with the field's name), ``list[X]`` and ``tuple[X, ...]`` fields take a list (a tuple field keeps
a tuple), nested configs are built from mappings, and unknown keys are refused
with the list of valid ones. Range and choice checks go in :meth:`ConfigBase.validate`,
with :func:`check_number` and :func:`check_choice`. YAML is read with :func:`load_yaml`,
which refuses duplicate keys and names the file and line of a syntax error.

Use it for a new config in three lines::

    @dataclass
    class NullConfig(ConfigBase):
        config_name: ClassVar[str] = "audit null"
        fpr: float = 0.05

        def validate(self) -> None:
            check_number(self.where("fpr"), self.fpr, minimum=0.0, maximum=1.0)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

Config = TypeVar("Config", bound="ConfigBase")


class ConfigError(ValueError):
    """A value a user wrote is wrong; the message names the field (or file) and the fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in seen:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"key {key!r} is written twice (line {line}); keep one of them")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text``; syntax errors and duplicate keys name ``where`` (a file, a flag)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where} is not valid YAML{at}: {problem}; fix the syntax") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing or non-UTF-8 file is a clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None


def load_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Read a YAML file with :func:`parse_yaml`, naming the file in every error."""
    return parse_yaml(read_text(path, what), f"{what} {path}")


def check_number(
    where: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    integer: bool = False,
) -> None:
    """Refuse anything but a finite (integer) number within the bounds, naming ``where``."""
    kind = "an integer" if integer else "a finite number"
    allowed = int if integer else (int, float)
    ok = isinstance(value, allowed) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)  # type: ignore[arg-type]
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
        if ok and (value < minimum or (exclusive_minimum and value == minimum)):  # type: ignore[operator]
            ok = False
    if maximum is not None:
        bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum:g}")
        if ok and (value > maximum or (exclusive_maximum and value == maximum)):  # type: ignore[operator]
            ok = False
    if not ok:
        expected = " ".join([kind, " and ".join(bounds)]).strip()
        raise ConfigError(f"{where}={value!r} is invalid: must be {expected}")


def check_choice(where: str, value: object, allowed: typing.Iterable[object]) -> None:
    """Refuse a value outside ``allowed``, listing the allowed values."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{where}={value!r} is invalid: use one of {allowed}")


class ConfigBase:
    """Base of every config dataclass: type checks from the annotations, then :meth:`validate`.

    ``config_name`` prefixes field names in messages (``"recipe optim"`` ->
    ``recipe optim.lr=nan is invalid: ...``). The base itself is no dataclass, so a subclass
    may be ``@dataclass(frozen=True)`` (a frozen dataclass cannot derive from a mutable one).
    """

    config_name: ClassVar[str] = "config"
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.init:
                # object.__setattr__, so the checked value also lands on frozen configs
                object.__setattr__(
                    self,
                    f.name,
                    _checked(self.where(f.name), getattr(self, f.name), _hints(type(self))[f.name]),
                )
        self.validate()

    def validate(self) -> None:
        """Range, choice and cross-field checks; types are already checked."""

    def where(self, name: str) -> str:
        """``config_name.name``: how messages name a field."""
        return f"{self.config_name}.{name}"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-serialisable) that :meth:`from_dict` turns back."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls: type[Config], data: Any, where: str | None = None) -> Config:
        """Build from a mapping, recursing into nested configs; unknown keys are refused."""
        return build_config(cls, data, where or cls.config_name)

    @classmethod
    def from_yaml(cls: type[Config], path: str | Path) -> Config:
        """Read a YAML file (duplicate keys refused) and build the config from it."""
        data = load_yaml(path, f"{cls.config_name} file")
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.config_name} file {path} must hold a YAML mapping")
        return cls.from_dict(data)


def build_config(cls: type[Config], data: Any, where: str) -> Config:
    """Instantiate ``cls`` from a mapping, recursing into nested config fields."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"{where} needs key(s) {missing}")
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        nested = _config_in(hints[name])
        if nested is not None and value is not None:
            value = build_config(nested, value, f"{where}.{name}" if where != "recipe" else name)
        elif isinstance(value, str) and _accepts(hints[name], float):
            value = _as_float(value)
        kwargs[name] = value
    return cls(**kwargs)


def _as_float(text: str) -> float | str:
    # YAML 1.1 reads "1e-3" (no dot) as a string; numbers are what every float field wants.
    try:
        return float(text)
    except ValueError:
        return text


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _union_args(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _accepts(hint: Any, kind: type) -> bool:
    return kind in _union_args(hint)


def _config_in(hint: Any) -> type[ConfigBase] | None:
    """The config type in ``X`` or ``X | None``, else ``None``."""
    for arg in _union_args(hint):
        if isinstance(arg, type) and issubclass(arg, ConfigBase):
            return arg
    return None


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    parts = []
    for arg in _union_args(hint):
        origin = typing.get_origin(arg)
        if arg is type(None):
            parts.append("null")
        elif origin is list or (origin is tuple and _homogeneous(arg)):
            parts.append(f"a list ({_describe(typing.get_args(arg)[0])} each)")
        elif origin is tuple:
            items = ", ".join(_describe(a) for a in typing.get_args(arg))
            parts.append(f"a list of {len(typing.get_args(arg))} ({items})")
        elif isinstance(arg, type) and issubclass(arg, ConfigBase):
            # only a constructor call gets here: from_dict builds the config from a mapping
            parts.append(f"a {arg.__name__} (from_dict takes a mapping)")
        elif origin is dict:
            parts.append("a mapping")
        else:
            parts.append(names.get(arg, getattr(arg, "__name__", str(arg))))
    return " or ".join(parts)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if _homogeneous(hint):
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _homogeneous(hint: Any) -> bool:
    """Whether a ``tuple[...]`` hint is ``tuple[X, ...]`` (any length)."""
    args = typing.get_args(hint)
    return len(args) == 2 and args[1] is Ellipsis


def _checked(where: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the annotated type, else a clear error. A list or tuple becomes a
    tuple for a ``tuple[...]`` field and a list otherwise (what YAML and JSON give back)."""
    matching = [arg for arg in _union_args(hint) if _matches(value, arg)]
    if not matching:
        raise ConfigError(f"{where}={value!r} is invalid: must be {_describe(hint)}")
    if isinstance(value, (list, tuple)) and typing.get_origin(matching[0]) is tuple:
        return tuple(value)
    return list(value) if isinstance(value, tuple) else value
