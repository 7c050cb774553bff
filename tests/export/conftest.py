"""Trained-looking interventions on tiny random models for the export tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel

MakeModel = Callable[..., ISaeRFTModel]


def make_intervention(
    component: str = "bias",
    hooks: Sequence[str] = ("blocks.1.hook_resid_post",),
    architecture: str = "standard",
    seed: int = 0,
    **sae_kwargs: Any,
) -> ISaeRFTModel:
    """An ISaeRFT model whose components have been moved off identity, as training would."""
    saes = [
        tiny_sae(architecture, hook_name=hook, seed=seed + i, **sae_kwargs)
        for i, hook in enumerate(hooks)
    ]
    model = ISaeRFTModel(tiny_model(), saes, ISaeRFTConfig(component=component))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model


@pytest.fixture
def make_model() -> MakeModel:
    """``make_model(component, hooks, architecture, seed, **sae_kwargs)``."""
    return make_intervention


@pytest.fixture
def tokens() -> torch.Tensor:
    """A batch of random token ids for the tiny model (vocab 50)."""
    return torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(1))
