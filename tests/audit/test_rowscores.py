"""Per-row scores, AUROC and suspect thresholds."""

from __future__ import annotations

import random

import pytest
import torch
from factories import edited_model

from isaerft import ISaeRFTModel
from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.rowscores import (
    activation_scores,
    auroc,
    excess_gain,
    excess_gain_null,
    row_logprobs,
    suspect_threshold,
    token_excess_gain,
    top_token_sum,
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


def _rows(lengths: list[int], prompt: int) -> AuditData:
    return AuditData(
        [torch.arange(4, 4 + n) for n in lengths], [prompt] * len(lengths), [{}] * len(lengths)
    )


def test_top_token_sum_reads_only_completion_tokens() -> None:
    data = _rows([6, 4], prompt=2)
    gains = torch.tensor(
        [
            [0.0, 0.0, 1.0, 5.0, 2.0, 3.0],  # completion = positions 2..5
            [0.0, 0.0, -1.0, -2.0, 0.0, 0.0],  # completion = positions 2..3; padding after
        ],
        dtype=torch.float64,
    )
    assert top_token_sum(gains, data, 2).tolist() == [8.0, -3.0]  # not a padded 0
    assert top_token_sum(gains, data, 3).tolist() == [10.0, -3.0]  # a short row: all it has
    assert top_token_sum(gains, data, 0).tolist() == [11.0, -3.0]


def _edited(seed: int) -> ISaeRFTModel:
    return edited_model("scale", seed=seed)


def test_excess_gain_over_every_token_is_the_summed_completion_gain() -> None:
    gen = torch.Generator().manual_seed(0)
    data = AuditData(
        [torch.randint(4, 50, (9,), generator=gen) for _ in range(5)], [3] * 5, [{}] * 5
    )
    candidate, refs = _edited(1), [_edited(2), _edited(3)]
    expected = row_logprobs(candidate, data, base=False) - torch.stack(
        [row_logprobs(m, data, base=False) for m in refs]
    ).mean(0)
    assert torch.allclose(excess_gain(candidate, refs, data, top_tokens=0), expected, atol=1e-5)
    no_refs = row_logprobs(candidate, data, base=False) - row_logprobs(candidate, data, base=True)
    assert torch.allclose(excess_gain(candidate, [], data), no_refs, atol=1e-5)
    # The largest 2 tokens score at least what any 2 of them do, and at most the positive sum.
    top2 = excess_gain(candidate, refs, data, top_tokens=2)
    gains = token_excess_gain(candidate, refs, data)
    assert torch.all(top2 >= gains[:, 3:5].sum(1) - 1e-9)
    assert torch.all(top2 <= gains.clamp(min=0).sum(1) + 1e-9)


def test_excess_gain_null_scores_each_run_against_the_others() -> None:
    gen = torch.Generator().manual_seed(4)
    own = [
        AuditData([torch.randint(4, 50, (8,), generator=gen) for _ in range(3)], [2] * 3, [{}] * 3)
        for _ in range(3)
    ]
    refs = [_edited(5), _edited(6), _edited(7)]
    null = excess_gain_null(refs, own, top_tokens=0)
    first = row_logprobs(refs[0], own[0], base=False) - torch.stack(
        [row_logprobs(m, own[0], base=False) for m in refs[1:]]
    ).mean(0)
    assert null.shape == (9,)
    assert torch.allclose(null[:3], first, atol=1e-5)
    with pytest.raises(ValueError, match="needs >= 2 reference runs"):
        excess_gain_null(refs[:1], own[:1])
