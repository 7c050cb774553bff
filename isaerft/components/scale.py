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

    An inactive latent contributes nothing whatever its scale, so only the active latents of
    each token are decoded when they are few (see ``sparse_decode_density``).
    """

    parameter_l1 = True

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        init = torch.zeros(d_sae, dtype=self.param_dtype)
        if config.init == "normal":
            init.normal_(0.0, config.init_std)
        self.scale_delta = nn.Parameter(init)
        self.sparse_density = config.sparse_decode_density
        self._k_hint = 0  # largest active-latent count per token seen so far

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return self.scale_delta.to(f.dtype) * f

    def edits(self) -> dict[str, torch.Tensor]:
        return {"scale": self.scale_delta}

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        l1 = self.scale_delta.abs().sum()
        flat = f.reshape(-1, self.d_sae)
        limit = int(self.sparse_density * self.d_sae)
        # Supported SAEs emit non-negative codes, so the top k+1 codes of a row include a
        # zero exactly when the row has at most k active latents. Counting non-zeros directly
        # costs as much as the encode; this check costs a top-k, often one per forward.
        k = self._k_hint or int(getattr(decoder.sae.cfg, "k", 0) or 16)
        k = min(k, limit)
        while flat.shape[0] and k > 0:
            vals, idx = flat.topk(min(k + 1, self.d_sae), dim=-1, sorted=False)
            if bool((vals.min(dim=-1).values <= 0).all()):
                self._k_hint = k
                out, _ = self.active_decoded_delta(vals, idx, decoder)
                return out.reshape(*f.shape[:-1], -1), l1
            k = 0 if k >= limit else min(2 * k, limit)
        return decoder.dense(self.latent_delta(f)), l1

    def takes_active_codes(self, k: int) -> bool:
        return 0 < k <= int(self.sparse_density * self.d_sae)

    def active_decoded_delta(
        self, values: torch.Tensor, indices: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.scale_delta.to(values.dtype)[indices] * values
        return decoder.gather(indices, weights), self.scale_delta.abs().sum()
