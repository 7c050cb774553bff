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


class ISaeRFT(Steerable):
    """``ISaeRFTModel`` with ``component=kind`` at the organism's SAE site (identity init).

    The factor rescales the splice's change of the activation, ``x + factor * (x' - x)``
    (:meth:`ISaeRFTModel.edit_factor`, as the ``reps`` recipe objective uses it): for ``-1``
    the edit is subtracted instead of added, as for the steering vectors.
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
        with self.model.edit_factor(self.scale):
            return self.model(tokens, return_type="logits")  # type: ignore[no-any-return]

    def moved_latents(self, tolerance: float = 1e-3) -> int:
        """Latents whose edit moved beyond ``tolerance`` (how sparse the explanation is)."""
        return self.model.num_moved_latents(tolerance)


for _kind in KINDS:
    register(f"isaerft-{_kind}", kind=_kind)(ISaeRFT)
