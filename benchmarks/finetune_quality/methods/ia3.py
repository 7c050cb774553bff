"""PEFT IA3 (Liu et al., 2022): learned rescaling of attention keys/values and MLP inputs."""

from __future__ import annotations

from . import register
from .base import MethodContext, WeightMethod
from .lora import require_peft


@register("ia3")
class IA3(WeightMethod):
    """PEFT's GPT-2 defaults: ``c_attn`` outputs and the MLP's ``c_proj`` input are rescaled."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        peft = require_peft()
        config = peft.IA3Config(
            target_modules=["c_attn", "mlp.c_proj"],
            feedforward_modules=["mlp.c_proj"],
            fan_in_fan_out=True,
        )
        self.hf = peft.get_peft_model(self.hf, config)
