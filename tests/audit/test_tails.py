"""ScoreTail: reference tail shares and their inverse, fitted past the reference's top."""

from __future__ import annotations

import pytest
import torch

from isaerft.audit.tails import ScoreTail


def test_inside_the_reference_shares_are_empirical() -> None:
    tail = ScoreTail.fit(torch.arange(1000, dtype=torch.float64))
    p = tail.pvalue(torch.tensor([0.0, 500.0, 989.0]))
    torch.testing.assert_close(p, torch.tensor([1.0, 501 / 1001, 12 / 1001], dtype=torch.float64))


def test_beyond_every_reference_row_scores_keep_their_order() -> None:
    tail = ScoreTail.fit(torch.randn(5000, generator=torch.Generator().manual_seed(0)))
    far = torch.tensor([5.0, 6.0, 8.0])
    p = tail.pvalue(far)
    assert bool((p[1:] < p[:-1]).all()) and float(p[0]) < 1 / 5001


def test_quantile_inverts_the_share() -> None:
    ref = torch.randn(5000, generator=torch.Generator().manual_seed(1)) ** 2
    tail = ScoreTail.fit(ref)
    x = torch.tensor([3.0, 9.0, 20.0, 40.0], dtype=torch.float64)
    torch.testing.assert_close(tail.quantile(tail.log_pvalue(x))[1:], x[1:], rtol=1e-6, atol=1e-6)
    # Inside the reference the inverse is the empirical upper quantile.
    assert abs(float(tail.quantile(torch.log(torch.tensor([0.5])))) - float(ref.median())) < 0.01


def test_a_tail_without_reference_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="reference score"):
        ScoreTail.fit(torch.tensor([]))


def test_without_a_spread_above_the_start_far_scores_stay_ordered() -> None:
    """Trusted rows that never carry a pairing: every carrying row is beyond them all, and a
    stronger pairing must still rank higher (not round to the same zero share)."""
    tail = ScoreTail.fit(torch.zeros(16000))
    rarity = tail.log_pvalue(torch.tensor([5.0, 50.0, 500.0]))
    assert bool(torch.isfinite(rarity).all()) and bool((rarity[1:] < rarity[:-1]).all())
