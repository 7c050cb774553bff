"""What every compared method is: trainable parameters and a logits function, one class each.

Two families: *hook methods* edit the residual stream of the frozen TransformerLens model at the
SAE's hook (isaerft, LoReFT, steering vectors), so they can be applied with a factor (``-1``
suppresses); *weight methods* train a copy of the Hugging Face GPT-2 checkpoint (PEFT LoRA and
IA3, full fine-tuning) and have no factor.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from sae_lens import SAE
from torch import nn
from transformer_lens import HookedTransformer
from transformers import GPT2LMHeadModel


@dataclass
class MethodContext:
    """What a method is built from: the frozen base models, the SAE, the hook and the data."""

    tl_model: HookedTransformer
    hf_model: GPT2LMHeadModel
    sae: SAE[Any]
    hook_name: str
    seed: int = 0
    # Rows (prompt ids, chosen ids, rejected ids) for methods computed from data (diffmean).
    train_rows: list[tuple[list[int], list[int], list[int]]] = field(default_factory=list)
    # hook -> SAE at every residual site (the ``-multisite`` isaerft methods).
    site_saes: dict[str, SAE[Any]] = field(default_factory=dict)


class Method:
    """A fine-tuning method under comparison."""

    supports_factor = False
    trains = True

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters."""
        raise NotImplementedError

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of right-padded ``tokens`` with the edit applied (at the current factor)."""
        raise NotImplementedError

    @contextmanager
    def factor(self, value: float) -> Iterator[None]:
        """Within this context the edit is applied ``value`` times (hook methods only)."""
        if value != 1.0:
            raise ValueError(f"{type(self).__name__} has no steering factor")
        yield

    def num_trainable(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters())

    def prepare(self, ctx: MethodContext) -> None:
        """Compute anything derived from data before training (default: nothing)."""

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Called after each optimizer step, before the schedule moves (default: nothing)."""


class Steerable(Method):
    """A method whose edit can be applied ``scale`` times (``scale`` 1 is the trained edit)."""

    supports_factor = True
    scale = 1.0

    @contextmanager
    def factor(self, value: float) -> Iterator[None]:
        previous, self.scale = self.scale, value
        try:
            yield
        finally:
            self.scale = previous


class HookMethod(Steerable):
    """Edits the activation at ``ctx.hook_name`` of the frozen TransformerLens model."""

    supports_factor = True

    def __init__(self, ctx: MethodContext) -> None:
        self.model, self.hook_name = ctx.tl_model, ctx.hook_name
        self.scale = 1.0
        for p in self.model.parameters():
            p.requires_grad_(False)

    def edit(self, x: torch.Tensor) -> torch.Tensor:
        """The edited activation (``x`` itself means no edit)."""
        raise NotImplementedError

    def _hook(self, x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x + self.scale * (self.edit(x) - x)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model.run_with_hooks(tokens, fwd_hooks=[(self.hook_name, self._hook)])
        return out  # type: ignore[no-any-return]


class WeightMethod(Method):
    """Trains (part of) a private copy of the Hugging Face checkpoint; the base stays untouched."""

    def __init__(self, ctx: MethodContext) -> None:
        self.hf: nn.Module = copy.deepcopy(ctx.hf_model)
        for p in self.hf.parameters():
            p.requires_grad_(False)

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.hf.parameters() if p.requires_grad]

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=tokens).logits  # type: ignore[no-any-return]
