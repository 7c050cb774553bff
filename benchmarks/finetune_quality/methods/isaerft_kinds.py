"""isaerft: one component kind between the SAE's encode and decode, via ``ISaeRFTModel``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.training.sparsity import proximal_l1_

from . import register
from .base import MethodContext, Steerable

KINDS = ("scale", "bias", "scale_bias", "mlp", "conditional", "latent_map")
"""The component kinds compared (``latent_map`` at its default rank 1: as many parameters as
``scale_bias``). ``conditional`` ("when latents A fired earlier in the text,
edit latents B") reads earlier positions: every logits call here runs the whole sequence (no KV
cache, see ``metrics.greedy_answers``) on right-padded rows, so its causal gate sees exactly
the tokens before each position."""


MULTISITE_KINDS = ("scale", "bias", "scale_bias", "mlp")
"""The kinds also compared at every residual site (``isaerft-<kind>-multisite``)."""

SPARSE_KINDS = ("scale", "scale_bias")
"""The kinds also compared with a proximal L1 update (``isaerft-<kind>-sparse``) and with a
latent budget (``isaerft-<kind>-top32``)."""
SPARSE_L1 = 0.01
"""The L1 coefficient of the ``-sparse`` methods when the benchmark does not tune (tuning
chooses one per task, :meth:`benchmarks.finetune_quality.run.Bench.tune`): an edit parameter
moves only where its Adam-averaged (clipped) gradient exceeds it. It is what the per-task rule
chose on the dev task (``style``, tiny preset, quick mode: the largest of 0.001, 0.003, 0.01,
0.03 at which ``isaerft-scale_bias-sparse`` kept >= 90 % of ``isaerft-scale_bias``'s gap
closed, 0.712 vs 0.731 with 110 of 512 latents moved)."""
LATENT_BUDGET = 32
"""The ``-top32`` methods keep only this many latents moved (the largest after each step; the
rest are set back to identity): how much of a task fits in a fixed, readable number of
latents, whatever the scale of its gradients (which a fixed L1 coefficient depends on)."""


class ISaeRFT(Steerable):
    """``ISaeRFTModel`` with ``component=kind`` at the organism's SAE site, or with
    ``multisite`` at every residual site of ``MethodContext.site_saes`` (identity init).

    The factor rescales the splice's change of the activation, ``x + factor * (x' - x)``
    (:meth:`ISaeRFTModel.edit_factor`, as the ``reps`` recipe objective uses it): for ``-1``
    the edit is subtracted instead of added, as for the steering vectors.
    """

    supports_factor = True

    def __init__(
        self,
        ctx: MethodContext,
        kind: str,
        multisite: bool = False,
        l1: float = 0.0,
        budget: int = 0,
    ) -> None:
        torch.manual_seed(ctx.seed)
        self.kind, self.l1, self.budget = kind, l1, budget
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

    @property
    def sparse(self) -> bool:
        """Whether training keeps the edit sparse (an L1 coefficient or a latent budget)."""
        return self.l1 > 0 or self.budget > 0

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The proximal L1 update of the ``-sparse`` methods, the latent budget of the
        ``-top32`` ones (hard thresholding); nothing otherwise."""
        if self.l1 > 0:
            proximal_l1_(optimizer, self.model.l1_targets(), self.l1)
        if self.budget > 0:
            with torch.no_grad():
                for site in self.model.sites:
                    magnitude = site.component.magnitude()
                    dropped = torch.ones_like(magnitude, dtype=torch.bool)
                    dropped[magnitude.topk(min(self.budget, magnitude.numel())).indices] = False
                    for edit in site.component.edits().values():
                        edit[dropped.to(edit.device)] = 0.0

    def top_latents(self, describe: Callable[[int], str], k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` latents whose edit moved most (one site): index, ``describe(index)``, and
        each edit's value (``scale`` as ``s - 1``, ``bias``), for reading what was learned."""
        site = self.model.sites[0]
        magnitude = site.component.magnitude()
        edits = {name: value.detach() for name, value in site.component.edits().items()}
        top = magnitude.topk(min(k, int((magnitude > 0).sum()))).indices.tolist()
        return [
            {"index": i, "label": describe(i)}
            | {name: round(float(v[i]), 4) for name, v in edits.items()}
            for i in top
        ]

    def moved_latents(self, tolerance: float = 1e-3) -> int:
        """Latents whose edit moved beyond ``tolerance`` (how sparse the explanation is)."""
        return self.model.num_moved_latents(tolerance)


def twin_and_suffix(name: str) -> tuple[str, str]:
    """The dense twin and the suffix of a sparse variant's name, as registered below
    (``isaerft-scale-top32`` -> ``("isaerft-scale", "top32")``)."""
    twin, suffix = name.rsplit("-", 1)
    return twin, suffix


for _kind in KINDS:
    register(f"isaerft-{_kind}", kind=_kind)(ISaeRFT)
for _kind in MULTISITE_KINDS:
    register(f"isaerft-{_kind}-multisite", kind=_kind, multisite=True)(ISaeRFT)
for _kind in SPARSE_KINDS:
    register(f"isaerft-{_kind}-sparse", kind=_kind, l1=SPARSE_L1)(ISaeRFT)
    register(f"isaerft-{_kind}-top{LATENT_BUDGET}", kind=_kind, budget=LATENT_BUDGET)(ISaeRFT)
