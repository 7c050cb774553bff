"""Losses as sums over targets divided by a given denominator.

Every function returns ``sum / denominator`` rather than a mean so the caller can divide by
the number of targets in the *global* batch: under DDP the ranks' gradients then average to
exactly the single-process gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from isaerft.rows.batch import token_logprobs


def next_token_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    denominator: torch.Tensor,
) -> torch.Tensor:
    """Summed cross-entropy over the masked targets, divided by ``denominator``.

    ``loss_mask[:, t]`` marks token ``t`` as a target. Used for both ``lm`` (mask = every
    token after the first) and ``sft`` (mask = completion tokens only).
    """
    nll = -token_logprobs(logits, input_ids)
    return (nll * loss_mask[:, 1:]).sum() / denominator


def sequence_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """Per row, the summed log-probability of its masked targets, shape ``(B,)``."""
    return (token_logprobs(logits, input_ids) * loss_mask[:, 1:]).sum(-1)


def dpo_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    beta: float,
    denominator: torch.Tensor,
    pair_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization over pairs stacked as ``[chosen; rejected]``.

    Returns ``(loss, reward_accuracy)``: ``loss = -sum w log sigmoid(beta * margin) /
    denominator`` with ``margin = (pi_c - ref_c) - (pi_r - ref_r)``, and the fraction of
    weighted pairs whose margin is positive. ``pair_weights`` (default 1) set to 0 for a pair
    whose chosen and rejected are identical gives it exactly zero gradient: their log-probs
    differ only by float noise, which must not be learned.
    """
    n = policy_logps.shape[0] // 2
    chosen = policy_logps[:n] - reference_logps[:n]
    rejected = policy_logps[n:] - reference_logps[n:]
    margin = beta * (chosen - rejected)
    weights = torch.ones_like(margin) if pair_weights is None else pair_weights.to(margin)
    loss = -(F.logsigmoid(margin) * weights).sum() / denominator
    correct = ((margin > 0).float() * weights).sum() / weights.sum().clamp(min=1)
    return loss, correct


def kl_to_base(
    logits: torch.Tensor,
    base_logits: torch.Tensor,
    loss_mask: torch.Tensor,
    denominator: torch.Tensor,
) -> torch.Tensor:
    """``KL(base || edited)`` of the next-token distributions, summed over masked positions.

    Position ``t`` (predicting token ``t + 1``) counts when ``loss_mask[:, t + 1]`` is set.
    """
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    base_logp = F.log_softmax(base_logits[:, :-1].float(), dim=-1)
    kl = (base_logp.exp() * (base_logp - logp)).sum(-1)
    return (kl * loss_mask[:, 1:]).sum() / denominator
