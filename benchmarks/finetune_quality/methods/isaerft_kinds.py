"""isaerft: one component kind between the SAE's encode and decode, via ``ISaeRFTModel``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from isaerft import ISaeRFTConfig, ISaeRFTModel

from . import register
from .base import MethodContext, Steerable

KINDS = ("scale", "bias", "scale_bias", "mlp")


class ISaeRFT(Steerable):
    """``ISaeRFTModel`` with ``component=kind`` at the organism's SAE site (identity init).

    The factor rescales the splice's change of the activation, ``x + factor * (x' - x)``: for
    ``-1`` the edit is subtracted instead of added, as for the steering vectors.
    """

    supports_factor = True

    def __init__(self, ctx: MethodContext, kind: str) -> None:
        torch.manual_seed(ctx.seed)
        self.kind = kind
        self.model = ISaeRFTModel(ctx.tl_model, ctx.sae, ISaeRFTConfig(component=kind))
        self.scale = 1.0

    def parameters(self) -> list[nn.Parameter]:
        return self.model.trainable_parameters()

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return self.model(tokens, return_type="logits")  # type: ignore[no-any-return]
        before: dict[str, torch.Tensor] = {}

        def record(x: torch.Tensor, hook: Any) -> torch.Tensor:
            before[hook.name] = x
            return x

        def rescale(x: torch.Tensor, hook: Any) -> torch.Tensor:
            return before[hook.name] + self.scale * (x - before[hook.name])

        base = self.model.model
        hooks = self.model.hook_names
        # Forward hooks run in registration order: record, then the splice, then rescale.
        with (
            base.hooks(fwd_hooks=[(h, record) for h in hooks]),
            self.model.spliced(),
            base.hooks(fwd_hooks=[(h, rescale) for h in hooks]),
        ):
            return base(tokens, return_type="logits")  # type: ignore[no-any-return]

    def moved_latents(self, tolerance: float = 1e-3) -> int:
        """Latents whose edit moved beyond ``tolerance`` (how sparse the explanation is)."""
        return self.model.num_moved_latents(tolerance)


for _kind in KINDS:
    register(f"isaerft-{_kind}", kind=_kind)(ISaeRFT)
