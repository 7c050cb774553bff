"""Baselines: top-k overlap and churn on known codes, dataset diffing with a planted latent."""

from __future__ import annotations

import random

import pytest
import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.baselines import dataset_diff, latent_churn, overlap_rates, topk_intersection

HOOK = "h"


def site(
    tokens: list[dict[int, float]], d_sae: int = 8, row_of: list[int] | None = None
) -> SiteCodes:
    tok, lat, val = [], [], []
    for t, active in enumerate(tokens):
        for j, v in sorted(active.items()):
            tok.append(t)
            lat.append(j)
            val.append(v)
    rows = torch.tensor(row_of if row_of is not None else list(range(len(tokens))))
    return SiteCodes(HOOK, d_sae, rows, torch.zeros(len(tokens), dtype=torch.long),
                     torch.tensor(tok, dtype=torch.long), torch.tensor(lat, dtype=torch.long),
                     torch.tensor(val), int(rows.max()) + 1)  # fmt: skip


def test_overlap_and_churn() -> None:
    base = site([{0: 3.0, 1: 2.0, 2: 1.0}, {3: 1.0}])
    assert overlap_rates(base, base, ks=(1, 2, 5)) == {1: 1.0, 2: 1.0, 5: 1.0}
    tuned = site([{0: 1.0, 1: 2.0, 2: 3.0}, {3: 1.0}])  # order of token 0 reversed
    rates = overlap_rates(base, tuned, ks=(1, 2, 3))
    assert rates == {1: pytest.approx(0.5), 2: pytest.approx(0.75), 3: 1.0}
    churn = latent_churn(base, tuned, k=1)
    assert churn.tolist()[:4] == [0.5, 0.0, 0.5, 0.0]  # 0 left and 2 entered on 1 of 2 tokens


def test_intersection_null_treatment() -> None:
    base = site([{0: 3.0, 1: 2.0}] * 4)
    same = {"task": (base, base), "general": (base, base)}
    shifted = site([{0: 1.0, 1: 2.0}] * 4)
    candidate = {"task": (base, shifted), "general": (base, base)}
    refs = [same, same, {"task": (base, base), "general": (base, site([{0: 3.0, 1: 2.5}] * 4))}]
    sites = [{"hook_name": HOOK, "d_sae": 8, "sae_fingerprint": "x"}]
    result = topk_intersection(candidate, refs, ks=(1,), latent_k=1, sites=sites)
    assert result.candidate[1]["difference"] == pytest.approx(1.0)
    assert result.flagged[1]
    assert result.per_latent is not None and result.per_latent.ranked[0].index in (0, 1)
    assert set(result.to_dict()) >= {"ks", "z", "flagged", "per_latent"}


def test_dataset_diff_finds_a_planted_latent() -> None:
    rng = random.Random(0)

    def rows(n: int, planted: float) -> SiteCodes:
        tokens = []
        for _ in range(n):
            active = {j: 1.0 for j in range(6) if rng.random() < 0.3}
            if rng.random() < planted:
                active[7] = 2.0
            tokens.append(active)
        return site(tokens)

    result = dataset_diff(rows(200, 0.15), rows(400, 0.0), permutations=100)
    assert result.is_flagged and result.flagged[0] == 7
    null = dataset_diff(rows(200, 0.0), rows(400, 0.0), permutations=100)
    assert not null.is_flagged
    assert null.to_dict(top=3)["top"][0]["index"] in range(8)
