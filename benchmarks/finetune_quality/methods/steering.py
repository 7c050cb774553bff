"""Steering vectors at the hook: a trained ``d_model`` bias, and a difference of means."""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .base import HookMethod, MethodContext


@register("steering-vector")
class SteeringVector(HookMethod):
    """``h + v`` at every position, ``v`` trained from zero (like ReFT-r1's bias / BiPO)."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.vector = nn.Parameter(torch.zeros(ctx.tl_model.cfg.d_model))

    def parameters(self) -> list[nn.Parameter]:
        return [self.vector]

    def edit(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.vector.to(x.dtype)


@register("diffmean")
class DiffMean(SteeringVector):
    """``h + v`` with ``v`` = mean hook activation over the chosen answers' tokens minus the mean
    over the rejected answers' tokens (same prompts); nothing trains, the factor is tuned."""

    trains = False

    def parameters(self) -> list[nn.Parameter]:
        return []

    def num_trainable(self) -> int:
        return 0

    @torch.no_grad()
    def prepare(self, ctx: MethodContext) -> None:
        if not ctx.train_rows:
            raise ValueError("diffmean needs training rows (prompt, chosen, rejected)")
        sums = [torch.zeros(ctx.tl_model.cfg.d_model) for _ in range(2)]
        counts = [0, 0]
        for prompt, *answers in ctx.train_rows:
            for side, answer in enumerate(answers):
                tokens = torch.tensor([prompt + answer])
                _, cache = ctx.tl_model.run_with_cache(tokens, names_filter=ctx.hook_name)
                acts = cache[ctx.hook_name][
                    0, len(prompt) - 1 : -1
                ]  # positions predicting the answer
                sums[side] += acts.sum(0)
                counts[side] += len(acts)
        self.vector.copy_(sums[0] / max(counts[0], 1) - sums[1] / max(counts[1], 1))
