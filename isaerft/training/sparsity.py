"""The proximal L1 update: sparse edits that are exactly zero where the data asks nothing.

Added to the loss, an L1 penalty only pushes each parameter towards zero by its subgradient;
with Adam every parameter then moves by about the learning rate each step whatever its
gradient, so after training *every* latent has a small non-zero edit and "how many latents
moved" counts all of them. The proximal update applies the penalty exactly instead: after each
optimizer step it soft-thresholds every penalised parameter towards its centre,

    theta <- centre + sign(d) * max(|d| - tau, 0),   d = theta - centre,

with ``tau = lr * coefficient`` for SGD (the proximal gradient method) and, for Adam,
``tau = lr * coefficient / (sqrt(v_hat) + eps)``: the threshold in the same per-coordinate
metric as Adam's own step (a preconditioned proximal step). A parameter then stays exactly at
its centre unless its (averaged) gradient exceeds ``coefficient`` in size, which is the
optimality condition of ``loss + coefficient * |theta - centre|``.
"""

from __future__ import annotations

from typing import Any

import torch

L1_UPDATES = ("gradient", "proximal")
"""How the L1 penalty enters training: as a loss term or as a proximal step."""


@torch.no_grad()
def proximal_l1_(
    optimizer: Any, targets: list[tuple[torch.nn.Parameter, torch.Tensor]], coefficient: float
) -> None:
    """Soft-threshold each ``(parameter, centre)`` of ``targets`` in place, after a step of
    ``optimizer`` (``torch.optim`` Adam, AdamW or SGD, or Lightning's wrapper of one)."""
    if coefficient <= 0:
        return
    optimizer = getattr(optimizer, "optimizer", optimizer)
    centres = {id(p): c for p, c in targets}
    for group in optimizer.param_groups:
        for param in group["params"]:
            centre = centres.get(id(param))
            if centre is None:
                continue
            tau = group["lr"] * coefficient / _preconditioner(optimizer, group, param)
            delta = param - centre
            param.copy_(centre + delta.sign() * (delta.abs() - tau).clamp_min(0))


def _preconditioner(optimizer: Any, group: dict[str, Any], param: torch.Tensor) -> Any:
    """Adam's per-coordinate step denominator ``sqrt(v_hat) + eps`` (1 for other optimizers)."""
    state = optimizer.state.get(param, {})
    if "exp_avg_sq" not in state:
        return 1.0
    step = float(state["step"])
    correction = 1.0 - group["betas"][1] ** step
    return (state["exp_avg_sq"] / correction).sqrt() + group["eps"]
