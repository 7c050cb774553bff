from __future__ import annotations

import pytest
import torch
from factories import tiny_model, tiny_sae
from torch import nn

from isaerft import (
    ISaeRFTConfig,
    ISaeRFTModel,
    LatentComponent,
    component_kinds,
    register_component,
)
from isaerft.components import base


class _Gate(LatentComponent):
    """A test kind: a per-latent gate ``f * sigmoid(g) * 2`` that starts at identity."""

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        self.gate = nn.Parameter(torch.zeros(d_sae))

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return (2 * torch.sigmoid(self.gate) - 1) * f

    def edits(self) -> dict[str, torch.Tensor]:
        return {"gate": 2 * torch.sigmoid(self.gate) - 1}


@pytest.fixture
def gate_kind():
    register_component("gate", _Gate)
    yield "gate"
    base._REGISTRY.pop("gate")


def test_new_kind_is_one_class_plus_one_registration(gate_kind):
    assert gate_kind in component_kinds()
    model = tiny_model()
    tokens = torch.randint(0, 50, (2, 8))
    wrapped = ISaeRFTModel(model, tiny_sae(), ISaeRFTConfig(component=gate_kind))
    assert torch.equal(wrapped(tokens), model(tokens))
    wrapped(tokens, return_type="loss").backward()
    assert wrapped.trainable_parameters()[0].grad is not None


def test_registering_a_non_component_fails():
    with pytest.raises(TypeError, match="LatentComponent subclass"):
        register_component("bad", nn.Linear)  # type: ignore[arg-type]


def test_reregistering_a_name_to_another_class_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_component("scale", _Gate)
