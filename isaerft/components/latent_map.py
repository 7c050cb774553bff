"""A low-rank latent-to-latent map: "where latents A fire, add latents B".

A per-latent ``scale`` can only rescale the latents already active at a position and a
``bias`` adds the same vector at every position, so neither can turn one feature into another
where it appears (a positive word into a negative one, one colour into another): that reads
one latent and writes a different one. This kind adds ``map_rank`` such read/write pairs,

``component(f) = f + (f U) V``  with ``U`` of shape ``(d_sae, r)`` and ``V`` of ``(r, d_sae)``,

the rank-``r`` matrix ``W = U V`` whose entry ``W[i, j]`` reads "where latent ``i`` fires with
activation ``a``, add ``a * W[i, j]`` to latent ``j``". Each rank term ``k`` is one sentence:
"where the latents with the largest ``|U[:, k]|`` fire, write the latents with the largest
``|V[k]|``" (:meth:`LatentMapComponent.rules`). Unlike ``conditional`` it reads the current
position only, so it keeps the KV cache. ``V`` starts at zero (the identity, exactly) and ``U``
small and random, as LoRA starts, so ``V`` gets a gradient from the first step. It decodes in
rank ``r``: ``(f U) (V W_dec)``, never a dense ``(n, d_sae)`` delta.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from isaerft.components.base import LatentComponent, top_entries

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class LatentMapComponent(LatentComponent):
    """``map_rank`` rules "where latents A fire at this position, add latents B"."""

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        rank, dtype = config.map_rank, self.param_dtype
        bound = 1.0 / math.sqrt(d_sae)
        self.read = nn.Parameter(torch.empty(d_sae, rank, dtype=dtype).uniform_(-bound, bound))
        self.write = nn.Parameter(torch.zeros(rank, d_sae, dtype=dtype))
        if config.init == "normal":
            nn.init.normal_(self.write, 0.0, config.init_std)

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return ((f.to(self.param_dtype) @ self.read) @ self.write).to(f.dtype)

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        coefficient = f.to(self.param_dtype) @ self.read  # (..., rank)
        out = coefficient.to(decoder.weight.dtype) @ decoder.dense(self.write)
        # The L1 charges the latent delta, as every input-dependent kind's does; only the
        # penalty needs that (n, d_sae) product, the decode above stays in rank r.
        l1 = (coefficient @ self.write).abs().sum(-1).mean()
        return out, l1

    def edits(self) -> dict[str, torch.Tensor]:
        # Per latent: how much the rules read from it and how much they write to it, each
        # weighted by the other side's size, so both are zero while ``write`` is.
        read, write = self.read.detach().abs(), self.write.detach().abs()
        return {
            "map_read": read @ write.sum(-1),
            "map_write": read.sum(0) @ write,
        }

    def matrix(self) -> torch.Tensor:
        """The dense ``(d_sae, d_sae)`` map ``U V``: entry ``[i, j]`` is what latent ``i``
        adds to latent ``j`` per unit of its activation."""
        return (self.read @ self.write).detach()

    def rules(self, top: int = 5) -> list[dict[str, object]]:
        """Each rank term as ``{"strength", "read": [(latent, u)], "write": [(latent, v)]}``,
        strongest first, each list the ``top`` latents by magnitude; ``strength`` is the
        term's ``||U[:, k]|| * ||V[k]||``. A term's sign is shared by ``u`` and ``v``
        (flipping both is the same map), so only products ``u * v`` carry meaning."""
        read, write = self.read.detach(), self.write.detach()
        strength = read.norm(dim=0) * write.norm(dim=1)
        return [
            {
                "strength": float(strength[k]),
                "read": top_entries(read[:, k], top),
                "write": top_entries(write[k], top),
            }
            for k in torch.argsort(strength, descending=True).tolist()
        ]
