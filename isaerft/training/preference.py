"""A reference-free, bidirectional preference objective in the style of RePS and SimPO.

SimPO (Meng et al., 2024) compares the *length-normalised* log-likelihoods of the chosen and
rejected responses under the policy alone, with a target margin ``gamma``: no reference model.
RePS (Wu et al., 2025, "Improved Representation Steering for Language Models") trains a steering
edit with such an objective in both directions: applied with a positive factor the edit must
prefer the chosen (steered) response, applied with a negative factor it must prefer the rejected
(unsteered) one, so the same edit also *suppresses* the concept.

Rows are stacked ``[chosen; rejected]`` as in :func:`isaerft.training.objectives.dpo_loss`; the
loss is a sum divided by ``denominator`` (the number of pairs in the global batch) for the same
DDP reason as the other objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def length_normalised(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities divided by the number of target tokens of each row."""
    if bool((lengths <= 0).any()):
        raise ValueError("every preference row needs at least one target token (lengths > 0)")
    return logps / lengths.to(logps.dtype)


def _pair_margins(
    logps: torch.Tensor, lengths: torch.Tensor, beta: float, gamma: float
) -> torch.Tensor:
    if logps.shape != lengths.shape or logps.ndim != 1 or logps.shape[0] % 2:
        raise ValueError(
            f"expected 1-D log-probs and lengths of the same even length stacked as "
            f"[chosen; rejected], got shapes {tuple(logps.shape)} and {tuple(lengths.shape)}"
        )
    n = logps.shape[0] // 2
    avg = length_normalised(logps, lengths)
    return beta * (avg[:n] - avg[n:]) - gamma


def reference_free_preference_loss(
    steered_logps: torch.Tensor,
    lengths: torch.Tensor,
    denominator: torch.Tensor | float,
    *,
    suppressed_logps: torch.Tensor | None = None,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The bidirectional RePS/SimPO-style loss and the share of pairs ranked right.

    Args:
        steered_logps: summed response log-probs with the edit applied (factor ``+1``),
            shape ``(2n,)`` stacked ``[chosen; rejected]``.
        lengths: target tokens per row, same shape.
        denominator: what the summed loss is divided by (pairs in the global batch).
        suppressed_logps: the same rows' log-probs with the edit negated (factor ``-1``);
            ``None`` gives the one-directional SimPO loss (for edits without a factor).
        beta: scale of the length-normalised log-likelihood difference.
        gamma: target margin.

    Returns:
        ``(loss, accuracy)``: ``loss = -(sum log sigmoid(m+) + sum log sigmoid(m-)) /
        denominator`` with ``m+ = beta * (chosen - rejected) - gamma`` under the edit and
        ``m- = beta * (rejected - chosen) - gamma`` under the negated edit; ``accuracy`` is
        the share of pairs (and directions) whose margin beats ``gamma``.
    """
    if beta <= 0:
        raise ValueError(f"beta={beta} must be > 0")
    margins = [_pair_margins(steered_logps, lengths, beta, gamma)]
    if suppressed_logps is not None:
        margins.append(-_pair_margins(suppressed_logps, lengths, beta, -gamma))
    both = torch.cat(margins)
    loss = -F.logsigmoid(both).sum() / denominator
    return loss, (both > 0).float().mean()
