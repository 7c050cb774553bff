"""A small residual MLP on the latents: ``component(f) = f + W_out act(W_in f + b_in) + b_out``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from isaerft.components.base import LatentComponent

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class MLPComponent(LatentComponent):
    """Lets latents interact; the output layer starts at zero so the map starts at identity.

    Its per-latent edit is the norm of each latent's column of ``W_out`` (how strongly the MLP
    can write to that latent) plus ``|b_out|``.
    """

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        dtype = self.param_dtype
        self.inp = nn.Linear(d_sae, config.mlp_hidden, dtype=dtype)
        self.act = _ACTIVATIONS[config.mlp_activation]()
        self.out = nn.Linear(config.mlp_hidden, d_sae, dtype=dtype)
        nn.init.zeros_(self.out.bias)
        if config.init == "normal":
            nn.init.normal_(self.out.weight, 0.0, config.init_std)
        else:
            nn.init.zeros_(self.out.weight)

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.inp(f.to(self.param_dtype)))
        return self.out(hidden).to(f.dtype)

    def edits(self) -> dict[str, torch.Tensor]:
        return {"mlp_out": self.out.weight.norm(dim=1), "mlp_bias": self.out.bias}
