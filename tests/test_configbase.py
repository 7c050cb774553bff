"""The config base: types from annotations, finite numbers, duplicate YAML keys, file errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from isaerft.configbase import (
    ConfigBase,
    ConfigError,
    check_choice,
    check_number,
    load_yaml,
    parse_yaml,
)


@dataclass
class Inner(ConfigBase):
    config_name: ClassVar[str] = "inner"
    rate: float = 0.5


@dataclass
class Outer(ConfigBase):
    config_name: ClassVar[str] = "outer"
    flag: bool = False
    count: int = 1
    names: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    limit: float | None = None

    def validate(self) -> None:
        check_number(self.where("count"), self.count, minimum=1, integer=True)


def test_round_trip_through_dict_and_yaml(tmp_path: Path) -> None:
    cfg = Outer(flag=True, count=3, names=["a"], inner=Inner(rate=0.1), limit=2.0)
    assert Outer.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert Outer.from_yaml(path) == cfg


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"flag": "yes please"}, r"outer.flag='yes please' is invalid: must be true or false"),
        ({"flag": 1}, r"outer.flag=1 is invalid"),
        ({"count": 2.0}, r"outer.count=2.0 is invalid: must be an integer"),
        ({"count": 0}, r"outer.count=0 is invalid: must be an integer >= 1"),
        ({"inner": {"rate": float("nan")}}, r"inner.rate=nan is invalid: must be a finite number"),
        ({"limit": float("-inf")}, r"outer.limit=-inf is invalid: must be a finite number or null"),
        ({"names": "a"}, r"outer.names='a' is invalid: must be a list \(a string each\)"),
        ({"inner": 3}, r"outer.inner must be a mapping"),
        ({"typo": 1}, r"unknown key\(s\) \['typo'\] in outer; valid keys: \['count', 'flag'"),
    ],
)
def test_bad_values_name_the_field(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Outer.from_dict(data)


def test_numbers_written_as_strings_are_read_as_floats() -> None:
    assert Outer.from_dict({"inner": {"rate": "1e-3"}}).inner.rate == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match=r"inner.rate=nan is invalid"):
        Outer.from_dict(parse_yaml("inner: {rate: .nan}", "test"))


def test_check_helpers() -> None:
    check_number("x", 0.0, minimum=0)
    with pytest.raises(ConfigError, match=r"x=0.0 is invalid: must be a finite number > 0"):
        check_number("x", 0.0, minimum=0, exclusive_minimum=True)
    with pytest.raises(ConfigError, match=r"x=2 is invalid: must be a finite number <= 1"):
        check_number("x", 2, maximum=1)
    with pytest.raises(ConfigError, match=r"y='c' is invalid: use one of \['a', 'b'\]"):
        check_choice("y", "c", ("a", "b"))
    check_number("x", 0.5, minimum=0, maximum=1, exclusive_maximum=True)
    with pytest.raises(ConfigError, match=r"x=1 is invalid: must be a finite number >= 0 and < 1"):
        check_number("x", 1, minimum=0, maximum=1, exclusive_maximum=True)


@dataclass(frozen=True)
class Frozen(ConfigBase):
    config_name: ClassVar[str] = "frozen"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[str, float] | None = None
    inner: Inner = field(default_factory=Inner)


def test_frozen_configs_and_tuple_fields() -> None:
    cfg = Frozen(sizes=[3], pair=["a", 1.5])
    assert cfg.sizes == (3,) and cfg.pair == ("a", 1.5)  # lists become the annotated tuples
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sizes = (4,)  # type: ignore[misc]
    assert Frozen.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(
        ConfigError, match=r"frozen.sizes=\['a'\] is invalid: must be a list \(an integer"
    ):
        Frozen(sizes=["a"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"frozen.pair=\['a'\] is invalid: must be a list of 2"):
        Frozen(pair=["a"])  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"frozen.inner=3 is invalid: must be a Inner \(from_dict"
    ):
        Frozen(inner=3)  # type: ignore[arg-type]


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: 1\nb:\n  c: 2\n  c: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"r.yaml: key 'c' is written twice \(line 4\)"):
        load_yaml(path)


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: [1, 2\nb: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"r.yaml is not valid YAML at line \d+, column \d+"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"override 'x=\{' is not valid YAML"):
        parse_yaml("{", "override 'x={'")


def test_non_utf8_and_missing_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("a: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text"):
        load_yaml(path)
    with pytest.raises(FileNotFoundError, match=r"none.yaml not found"):
        load_yaml(tmp_path / "none.yaml")
