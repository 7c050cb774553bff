"""Scale and bias together: ``component(f) = s * f + b``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from isaerft.components.base import LatentComponent
from isaerft.components.bias import BiasComponent
from isaerft.components.scale import ScaleComponent

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class ScaleBiasComponent(LatentComponent):
    """A per-latent affine map; each part keeps its own cheap decode path."""

    parameter_l1 = True

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        self.scale = ScaleComponent(d_sae, config)
        self.shift = BiasComponent(d_sae, config)

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale.latent_delta(f) + self.shift.latent_delta(f)

    def edits(self) -> dict[str, torch.Tensor]:
        return {**self.scale.edits(), **self.shift.edits()}

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scaled, l1_scale = self.scale.decoded_delta(f, decoder)
        shifted, l1_bias = self.shift.decoded_delta(f, decoder)
        return scaled + shifted, l1_scale + l1_bias
