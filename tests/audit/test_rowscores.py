"""Per-row scores, AUROC and suspect thresholds."""

from __future__ import annotations

import random

import pytest
import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.rowscores import (
    activation_scores,
    auroc,
    suspect_threshold,
    typical_row_amount,
)

HOOK = "h"


def brute_auroc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pairwise_count_with_ties() -> None:
    rng = random.Random(0)
    scores = [float(rng.randint(0, 5)) for _ in range(60)]
    labels = [rng.random() < 0.3 for _ in range(60)]
    assert auroc(scores, labels) == pytest.approx(brute_auroc(scores, labels))
    assert auroc([3.0, 2.0, 1.0], [True, False, False]) == 1.0
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([1.0, 2.0], [True, True])


def codes(rows: list[list[dict[int, float]]], d_sae: int = 6) -> SiteCodes:
    """Site codes from per-row, per-token ``{latent: value}`` dicts."""
    token_row, token_pos, tok, lat, val = [], [], [], [], []
    t = 0
    for r, tokens in enumerate(rows):
        for p, active in enumerate(tokens):
            token_row.append(r)
            token_pos.append(p)
            for j, v in sorted(active.items()):
                tok.append(t)
                lat.append(j)
                val.append(v)
            t += 1
    return SiteCodes(
        HOOK,
        d_sae,
        torch.tensor(token_row),
        torch.tensor(token_pos),
        torch.tensor(tok, dtype=torch.long),
        torch.tensor(lat, dtype=torch.long),
        torch.tensor(val),
        len(rows),
    )


def test_activation_scores_weight_rare_latents_up() -> None:
    # Latent 0 fires in every row; latent 1 (the planted one) only in row 2.
    site = codes([[{0: 1.0}], [{0: 1.2}], [{0: 1.0, 1: 0.5}], [{0: 0.9}]])
    weights = {HOOK: {0: 1.0, 1: 1.0}}
    raw = activation_scores({HOOK: site}, weights)
    assert raw.tolist() == pytest.approx([1.0, 1.2, 1.5, 0.9])
    typical = typical_row_amount({HOOK: site}, {HOOK: [0, 1]})
    scored = activation_scores({HOOK: site}, weights, typical)
    assert int(scored.argmax()) == 2
    assert float(scored[2] - scored[1]) > 2.0  # the rare latent dominates once normalised
    # Max over tokens vs sum over tokens.
    per_row = codes([[{1: 0.2}, {1: 0.7}]]).row_reduce([1], "max")
    assert per_row.tolist() == [[pytest.approx(0.7)]]


def test_suspect_threshold_from_reference_or_outliers() -> None:
    scores = torch.tensor([0.0, 0.1, 0.2, 0.1, 9.0])
    reference = torch.linspace(0, 1, 101)
    assert suspect_threshold(scores, reference, 0.01) == pytest.approx(0.99)
    robust = suspect_threshold(scores, None, 0.01)
    assert 0.2 < robust < 9.0
