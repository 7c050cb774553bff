"""Per-latent scale: ``component(f) = s * f``. The core ISaeRFT component."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from isaerft.components.base import LatentComponent

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class ScaleComponent(LatentComponent):
    """Multiplies each latent by a learned scale, stored as ``scale_delta = s - 1``.

    A zero scale delta on an inactive latent changes nothing, so only the active latents
    of each token are decoded when they are few (see ``sparse_decode_density``).
    """

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        init = torch.zeros(d_sae, dtype=self.param_dtype)
        if config.init == "normal":
            init.normal_(0.0, config.init_std)
        self.scale_delta = nn.Parameter(init)
        self.sparse_density = config.sparse_decode_density

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale_delta.to(f.dtype) * f

    def edits(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale_delta}

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        l1 = self.scale_delta.abs().sum()
        active = f != 0
        k = int(active.sum(-1).max()) if f.numel() else 0
        if self.sparse_density <= 0 or k > self.sparse_density * self.d_sae:
            return decoder.dense(self.latent_delta(f)), l1
        flat = f.reshape(-1, self.d_sae)
        if k == 0:
            return decoder.dense(torch.zeros_like(f)), l1
        _, idx = flat.abs().topk(k, dim=-1, sorted=False)
        vals = flat.gather(-1, idx)
        weights = self.scale_delta.to(vals.dtype)[idx] * vals
        out = decoder.gather(idx, weights)
        return out.reshape(*f.shape[:-1], -1), l1
