"""isaerft: one component kind between the SAE's encode and decode, via ``ISaeRFTModel``."""

from __future__ import annotations

import torch
from torch import nn

from isaerft import ISaeRFTConfig, ISaeRFTModel

from . import register
from .base import MethodContext, Steerable

KINDS = ("scale", "bias", "scale_bias", "mlp", "conditional")
"""The component kinds compared. ``conditional`` ("when latents A fired earlier in the text,
edit latents B") reads earlier positions: every logits call here runs the whole sequence (no KV
cache, see ``metrics.greedy_answers``) on right-padded rows, so its causal gate sees exactly
the tokens before each position."""


MULTISITE_KINDS = ("scale", "bias", "scale_bias", "mlp")
"""The kinds also compared at every residual site (``isaerft-<kind>-multisite``)."""


class ISaeRFT(Steerable):
    """``ISaeRFTModel`` with ``component=kind`` at the organism's SAE site, or with
    ``multisite`` at every residual site of ``MethodContext.site_saes`` (identity init).

    The factor rescales the splice's change of the activation, ``x + factor * (x' - x)``
    (:meth:`ISaeRFTModel.edit_factor`, as the ``reps`` recipe objective uses it): for ``-1``
    the edit is subtracted instead of added, as for the steering vectors.
    """

    supports_factor = True

    def __init__(self, ctx: MethodContext, kind: str, multisite: bool = False) -> None:
        torch.manual_seed(ctx.seed)
        self.kind = kind
        saes = list(ctx.site_saes.values()) if multisite else [ctx.sae]
        if multisite and len(saes) < 2:
            raise ValueError(
                "isaerft multisite needs SAEs at several sites (MethodContext.site_saes)"
            )
        self.model = ISaeRFTModel(ctx.tl_model, saes, ISaeRFTConfig(component=kind))
        self.scale = 1.0

    def parameters(self) -> list[nn.Parameter]:
        return self.model.trainable_parameters()

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.model.edit_factor(self.scale):
            return self.model(tokens, return_type="logits")  # type: ignore[no-any-return]

    def moved_latents(self, tolerance: float = 1e-3) -> int:
        """Latents whose edit moved beyond ``tolerance`` (how sparse the explanation is)."""
        return self.model.num_moved_latents(tolerance)


for _kind in KINDS:
    register(f"isaerft-{_kind}", kind=_kind)(ISaeRFT)
for _kind in MULTISITE_KINDS:
    register(f"isaerft-{_kind}-multisite", kind=_kind, multisite=True)(ISaeRFT)
