"""LoReFT (Wu et al., 2024, "ReFT: Representation Finetuning for Language Models"; pyreft).

``h + R^T (W h + b - R h)`` with ``R`` (``rank x d_model``) having orthonormal rows, as pyreft's
``LoreftIntervention``: ``R`` is an orthogonal-parametrised linear map, ``W h + b`` a learned
projection. It is applied at the SAE's hook at *every* position (prompt and answer), like
isaerft and AxBench's ReFT-r1, not only at pyreft's ``f<k>+l<k>`` prompt positions.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .base import HookMethod, MethodContext


@register("loreft-r1", rank=1)
@register("loreft-r4", rank=4)
class LoReFT(HookMethod):
    """Rank-``rank`` LoReFT at the hook; the factor scales the whole edit ``R^T(...)``."""

    def __init__(self, ctx: MethodContext, rank: int) -> None:
        super().__init__(ctx)
        d = ctx.tl_model.cfg.d_model
        torch.manual_seed(ctx.seed)
        rotate = nn.Linear(d, rank, bias=False)
        self.rotate = nn.utils.parametrizations.orthogonal(rotate)
        self.learned = nn.Linear(d, rank)

    def parameters(self) -> list[nn.Parameter]:
        return [*self.rotate.parameters(), *self.learned.parameters()]

    def edit(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rotate.weight  # (rank, d) with orthonormal rows (orthogonal parametrisation)
        assert isinstance(r, torch.Tensor)
        return x + (self.learned(x) - x @ r.T) @ r
