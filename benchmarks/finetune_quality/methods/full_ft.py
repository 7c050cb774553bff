"""Full fine-tuning: every weight of a copy of the GPT-2 checkpoint trains."""

from __future__ import annotations

from . import register
from .base import MethodContext, WeightMethod


@register("full-ft")
class FullFineTune(WeightMethod):
    """All parameters trainable (the reference that ``gap_closed`` divides by)."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        for p in self.hf.parameters():
            p.requires_grad_(True)
