"""Each built-in kind: identity at init, its edits, its L1, and init='normal'."""

from __future__ import annotations

import pytest
import torch

from isaerft import ISaeRFTConfig
from isaerft.components import build_component, component_kinds

D_SAE = 16


@pytest.mark.parametrize("kind", sorted(component_kinds()))
def test_identity_init_gives_exact_zero_delta(kind):
    component = build_component(kind, D_SAE, ISaeRFTConfig(component=kind))
    f = torch.rand(3, 5, D_SAE)
    assert torch.equal(component.latent_delta(f), torch.zeros_like(f))
    assert all(torch.equal(e, torch.zeros_like(e)) for e in component.edits().values())
    assert all(e.shape == (D_SAE,) for e in component.edits().values())


@pytest.mark.parametrize("kind", sorted(component_kinds()))
def test_normal_init_moves_away_from_identity(kind):
    torch.manual_seed(0)
    component = build_component(
        kind, D_SAE, ISaeRFTConfig(component=kind, init="normal", init_std=0.1)
    )
    f = torch.rand(3, 5, D_SAE)
    assert not torch.equal(component.latent_delta(f), torch.zeros_like(f))


def test_scale_bias_edits_and_delta():
    component = build_component("scale_bias", D_SAE, ISaeRFTConfig(component="scale_bias"))
    with torch.no_grad():
        component.scale.scale_delta.fill_(0.5)
        component.shift.bias.fill_(0.25)
    f = torch.ones(2, D_SAE)
    torch.testing.assert_close(component.latent_delta(f), torch.full((2, D_SAE), 0.75))
    assert set(component.edits()) == {"scale", "bias"}
    torch.testing.assert_close(component.magnitude(), torch.full((D_SAE,), 0.75))


def test_component_dtype_follows_config():
    component = build_component("scale", D_SAE, ISaeRFTConfig(dtype="float64"))
    assert component.edits()["scale"].dtype == torch.float64


@pytest.mark.parametrize(
    ("kind", "constant"),
    [
        ("bias", True),
        ("scale", False),
        ("scale_bias", False),
        ("mlp", False),
        ("conditional", False),
        ("latent_map", False),
    ],
)
def test_each_kind_says_whether_its_edit_is_a_constant_shift(kind, constant):
    torch.manual_seed(0)
    component = build_component(
        kind, D_SAE, ISaeRFTConfig(component=kind, init="normal", init_std=0.1)
    )
    shift = component.constant_shift()
    assert (shift is not None) == constant
    if shift is not None:  # the shift is the delta, whatever the input
        f = torch.rand(4, D_SAE)
        torch.testing.assert_close(component.latent_delta(f), shift.expand_as(f))
