from __future__ import annotations

import pytest

from isaerft import ISaeRFTConfig


def test_json_round_trip():
    cfg = ISaeRFTConfig(
        component="mlp", hook_names=["blocks.1.hook_resid_post"], l1_coefficient=0.1
    )
    assert ISaeRFTConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"component": "lora"},
            r"component='lora'.*\['bias', 'conditional', 'latent_map', 'mlp', 'scale', 'scale_bias'\]",
        ),
        ({"init": "zeros"}, "init='zeros'"),
        ({"dtype": "int8"}, "dtype='int8'"),
        ({"l1_coefficient": -1.0}, "l1_coefficient"),
        ({"hook_names": []}, "hook_names is empty"),
        ({"hook_names": ["a", "a"]}, "more than once"),
        ({"mlp_hidden": 0}, "mlp_hidden"),
        ({"map_rank": 0}, "map_rank"),
        ({"sparse_decode_density": 2.0}, "sparse_decode_density"),
        ({"init": "normal", "init_std": 0.0}, "init_std=0"),
        ({"mlp_activation": "tanh"}, "mlp_activation"),
    ],
)
def test_invalid_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ISaeRFTConfig(**kwargs)


def test_hook_names_as_string_is_a_type_error():
    with pytest.raises(TypeError, match="list of hook names"):
        ISaeRFTConfig(hook_names="blocks.1.hook_resid_post")  # type: ignore[arg-type]


def test_unknown_keys_are_listed():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rank'\] in ISaeRFTConfig"):
        ISaeRFTConfig.from_dict({"component": "scale", "rank": 8})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"l1_coefficient": float("nan")}, r"ISaeRFTConfig.l1_coefficient=nan is invalid"),
        ({"init_std": float("inf")}, r"ISaeRFTConfig.init_std=inf is invalid"),
        ({"sparse_decode_density": float("nan")}, "sparse_decode_density=nan"),
        ({"l1_coefficient": True}, "l1_coefficient=True"),
        ({"mlp_hidden": 2.5}, "mlp_hidden=2.5"),
        ({"component": 3}, "component=3"),
    ],
)
def test_non_finite_and_mistyped_numbers_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ISaeRFTConfig(**kwargs)
