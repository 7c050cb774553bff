"""``AuditConfig`` and ``NullConfig`` on the config base: unknown keys and non-finite numbers are
refused in one line naming the field, and the config still round-trips through ``asdict``."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from isaerft.audit import AuditConfig, NullConfig
from isaerft.configbase import ConfigError


def refused(make: object, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        make()  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: AuditConfig.from_dict({"rowfpr": 0.1}), r"unknown key\(s\) \['rowfpr'\] in Audit"),
        (lambda: AuditConfig.from_dict({"null": {"fdr": 0.1}}), r"\['fdr'\] in AuditConfig\.null"),
        (lambda: NullConfig.from_dict({"top": 2}), r"unknown key\(s\) \['top'\] in NullConfig"),
        (lambda: AuditConfig(row_fpr=float("nan")), r"AuditConfig\.row_fpr=nan is invalid"),
        (lambda: NullConfig(fpr=float("nan")), r"NullConfig\.fpr=nan is invalid: must be a finite"),
        (lambda: NullConfig(floor_fraction=float("inf")), r"NullConfig\.floor_fraction=inf"),
        (lambda: AuditConfig.from_dict({"null": {"fpr": float("nan")}}), r"NullConfig\.fpr=nan"),
    ],
)
def test_unknown_keys_and_non_finite_numbers_are_refused(make: object, match: str) -> None:
    refused(make, match)


def test_unknown_key_lists_the_valid_ones() -> None:
    message = refused(lambda: NullConfig.from_dict({"fpr": 0.1, "fdr": 0.1}), "fdr")
    assert "valid keys: ['floor_fraction', 'fpr', 'threshold_method', 'top_m']" in message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"row_fpr": 1.0},
            r"AuditConfig\.row_fpr=1\.0 is invalid: must be a finite number > 0 and < 1",
        ),
        ({"row_score": "magic"}, r"AuditConfig\.row_score='magic' is invalid: use one of \["),
        ({"batch_size": 0}, r"AuditConfig\.batch_size=0 is invalid: must be an integer >= 1"),
        ({"attribution_steps": -1}, r"AuditConfig\.attribution_steps=-1 is invalid"),
        ({"row_tokens": -1}, r"AuditConfig\.row_tokens=-1 is invalid: must be an integer >= 0"),
        ({"row_tokens": 2.5}, r"AuditConfig\.row_tokens=2\.5 is invalid"),
        ({"ks": ()}, r"AuditConfig\.ks=\(\) is invalid: give at least one k"),
        ({"ks": (1, 0)}, r"AuditConfig\.ks\[1\]=0 is invalid: must be an integer >= 1"),
        ({"baselines": "yes"}, r"AuditConfig\.baselines='yes' is invalid: must be true or false"),
        ({"null": {"fpr": 0.1}}, r"AuditConfig\.null=.* must be a NullConfig"),
    ],
)
def test_bad_audit_values_name_the_field(kwargs: dict, match: str) -> None:
    refused(lambda: AuditConfig(**kwargs), match)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fpr": 1.0}, r"NullConfig\.fpr=1\.0 is invalid: must be a finite number > 0 and < 1"),
        ({"floor_fraction": 0.0}, r"NullConfig\.floor_fraction=0\.0 is invalid: must be a finite"),
        ({"top_m": 1.0}, r"NullConfig\.top_m=1\.0 is invalid: must be an integer"),
        ({"threshold_method": "magic"}, r"NullConfig\.threshold_method='magic' is invalid"),
    ],
)
def test_bad_null_values_name_the_field(kwargs: dict, match: str) -> None:
    refused(lambda: NullConfig(**kwargs), match)


def test_round_trips_and_keeps_its_types() -> None:
    config = AuditConfig(null=NullConfig(fpr=0.1, top_m=3), ks=[1, 5], probe_rows=32)
    assert config.ks == (1, 5)  # a list given for the tuple field becomes a tuple
    assert isinstance(AuditConfig().ks, tuple)
    assert AuditConfig(**{**dataclasses.asdict(config), "null": config.null}) == config
    assert AuditConfig.from_dict(dataclasses.asdict(config)) == config
    assert AuditConfig.from_dict(yaml.safe_load(config.to_yaml())) == config
    assert NullConfig.from_dict({"fpr": "5e-2"}).fpr == pytest.approx(0.05)


def test_a_cache_dir_that_is_a_file_is_refused(tmp_path) -> None:
    taken = tmp_path / "kept"
    taken.write_text("mine")
    refused(
        lambda: AuditConfig(cache_dir=str(taken)),
        r"AuditConfig\.cache_dir='.*kept' is a file, not a folder: give a folder",
    )
    assert taken.read_text() == "mine"
    assert AuditConfig(cache_dir=str(tmp_path / "new")).cache_dir == str(tmp_path / "new")
