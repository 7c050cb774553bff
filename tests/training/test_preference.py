"""The reference-free bidirectional preference objective (RePS/SimPO style)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isaerft.training.preference import reference_free_preference_loss

LENGTHS = torch.tensor([2.0, 4.0, 2.0, 4.0])  # [chosen; rejected] of two pairs


def test_one_directional_is_simpo() -> None:
    logps = torch.tensor([-2.0, -4.0, -6.0, -4.0])
    loss, acc = reference_free_preference_loss(logps, LENGTHS, 2.0, beta=2.0, gamma=0.5)
    avg = logps / LENGTHS
    margins = 2.0 * (avg[:2] - avg[2:]) - 0.5
    assert loss.item() == pytest.approx(-F.logsigmoid(margins).sum().item() / 2.0)
    assert acc.item() == pytest.approx(0.5)  # pair 1 ranks right (margin 3.5), pair 2 does not


def test_suppression_direction_prefers_the_rejected_answer() -> None:
    steered = torch.tensor([-1.0, -1.0, -8.0, -8.0])  # chosen more likely with the edit
    good = torch.tensor([-8.0, -8.0, -1.0, -1.0])  # rejected more likely with the edit negated
    bad = steered.clone()  # the negated edit still prefers the chosen answer
    low, acc_low = reference_free_preference_loss(steered, LENGTHS, 2.0, suppressed_logps=good)
    high, acc_high = reference_free_preference_loss(steered, LENGTHS, 2.0, suppressed_logps=bad)
    assert low < high and acc_low == 1.0 and acc_high == 0.5


def test_gradient_pushes_chosen_up_and_rejected_down() -> None:
    logps = torch.zeros(4, requires_grad=True)
    suppressed = torch.zeros(4, requires_grad=True)
    loss, _ = reference_free_preference_loss(logps, LENGTHS, 2.0, suppressed_logps=suppressed)
    loss.backward()
    assert logps.grad is not None and suppressed.grad is not None
    assert (logps.grad[:2] < 0).all() and (logps.grad[2:] > 0).all()
    assert (suppressed.grad[:2] > 0).all() and (suppressed.grad[2:] < 0).all()


@pytest.mark.parametrize(
    ("logps", "lengths", "match"),
    [
        (torch.zeros(3), torch.ones(3), "even length"),
        (torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 1.0]), "at least one target token"),
    ],
)
def test_bad_input_is_named(logps: torch.Tensor, lengths: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reference_free_preference_loss(logps, lengths, 1.0)
