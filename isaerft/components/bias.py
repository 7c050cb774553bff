"""Per-latent bias: ``component(f) = f + b``, a constant shift along decoder directions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from isaerft.components.base import LatentComponent

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class BiasComponent(LatentComponent):
    """Adds a learned bias to every latent at every position.

    Its decoded effect is the same vector ``b @ W_dec`` for every token, so it is decoded
    once per forward rather than once per token.
    """

    parameter_l1 = True

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        init = torch.zeros(d_sae, dtype=self.param_dtype)
        if config.init == "normal":
            init.normal_(0.0, config.init_std)
        self.bias = nn.Parameter(init)

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return self.bias.to(f.dtype).expand_as(f)

    def edits(self) -> dict[str, torch.Tensor]:
        return {"bias": self.bias}

    def constant_shift(self) -> torch.Tensor:
        return self.bias.detach()

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return decoder.dense(self.bias.to(f.dtype)), self.bias.abs().sum()
