"""Objectives: sums over targets divided by the given denominator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from isaerft.training.objectives import dpo_loss, kl_to_base, next_token_loss, sequence_logprobs


def test_next_token_loss_matches_cross_entropy_on_masked_targets() -> None:
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.bool)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="none")
    expected = (ce * mask[:, 1:].reshape(-1)).sum() / mask.sum()
    got = next_token_loss(logits, ids, mask, mask.sum().float())
    torch.testing.assert_close(got, expected)


def test_sequence_logprobs_sums_only_masked_targets() -> None:
    logits = torch.zeros(1, 4, 2)  # uniform: every target has log p = -log 2
    ids = torch.tensor([[0, 1, 0, 1]])
    mask = torch.tensor([[False, False, True, True]])
    torch.testing.assert_close(
        sequence_logprobs(logits, ids, mask), torch.tensor([-2 * math.log(2)])
    )


def test_dpo_loss_is_log2_at_the_reference_and_falls_with_margin() -> None:
    ref = torch.tensor([-3.0, -4.0, -3.5, -2.0])  # [chosen x2; rejected x2]
    loss, acc = dpo_loss(ref.clone(), ref, beta=0.1, denominator=torch.tensor(2.0))
    torch.testing.assert_close(loss, torch.tensor(math.log(2)))
    better = ref + torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss2, acc2 = dpo_loss(better, ref, beta=0.1, denominator=torch.tensor(2.0))
    assert loss2 < loss and acc2 == 1.0 and acc == 0.0


def test_kl_is_zero_for_identical_logits_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    mask = torch.ones(2, 4, dtype=torch.bool)
    denominator = torch.tensor(6.0)
    assert float(kl_to_base(logits, logits, mask, denominator)) == 0.0
    assert float(kl_to_base(logits + torch.randn(2, 4, 7), logits, mask, denominator)) > 0.0


def test_identical_pairs_give_exactly_zero_gradient() -> None:
    from isaerft.training.module import distinct_pairs

    torch.manual_seed(0)
    weight = torch.randn(7, 7, requires_grad=True)
    ids = torch.randint(0, 7, (2, 5))
    ids = torch.cat([ids, ids])  # [chosen; rejected], every pair identical
    mask = torch.ones_like(ids, dtype=torch.bool)
    logits = F.one_hot(ids, 7).float() @ weight  # rows differ only by floating-point noise
    policy = sequence_logprobs(logits, ids, mask)
    loss, accuracy = dpo_loss(
        policy, policy.detach() * 0.999, 0.5, torch.tensor(2.0), distinct_pairs(ids, mask)
    )
    loss.backward()
    assert weight.grad is not None and bool((weight.grad == 0).all())
    assert float(loss) == 0.0 and float(accuracy) == 0.0
