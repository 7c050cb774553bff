"""PEFT LoRA (Hu et al., 2021) on every attention and MLP weight of the GPT-2 checkpoint."""

from __future__ import annotations

from typing import Any

from . import register
from .base import MethodContext, WeightMethod

GPT2_LINEAR = ["c_attn", "c_proj", "c_fc"]
"""GPT-2's Conv1D weights: attention in/out (``c_attn``, ``attn.c_proj``), MLP in/out."""


def require_peft() -> Any:
    """The ``peft`` module, or one clear line on how to get it."""
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            "the LoRA/IA3 baselines need PEFT: pip install peft (or pip install 'isaerft[compare]')"
        ) from err
    return peft


@register("lora-r1", rank=1)
@register("lora-r8", rank=8)
class LoRA(WeightMethod):
    """Rank-``rank`` LoRA, ``lora_alpha = 2 * rank``, no dropout, PEFT's default init (B = 0)."""

    def __init__(self, ctx: MethodContext, rank: int) -> None:
        super().__init__(ctx)
        peft = require_peft()
        config = peft.LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=GPT2_LINEAR,
            fan_in_fan_out=True,  # GPT-2's Conv1D stores weights as (in, out)
        )
        self.hf = peft.get_peft_model(self.hf, config)
