"""Trigger search: a prompt latent shared by the behaviour rows is found, random rows find none."""

from __future__ import annotations

import random

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.trigger import prompt_firing, search_trigger

HOOK = "h"
D_SAE = 12
PROMPT = 4  # tokens 0..3 of each row are prompt (0 is <bos>), 4..7 completion


def dataset(
    n_rows: int, trigger_rows: set[int], seed: int = 0
) -> tuple[dict[str, SiteCodes], AuditData]:
    """Rows of 8 tokens; latent 11 fires on a prompt token of ``trigger_rows``, latents 0..9
    fire at random everywhere, latent 10 fires in completions of trigger rows only."""
    rng = random.Random(seed)
    token_row, token_pos, tok, lat, val = [], [], [], [], []
    t = 0
    for r in range(n_rows):
        for p in range(8):
            token_row.append(r)
            token_pos.append(p)
            active = {j for j in range(10) if rng.random() < 0.2}
            if r in trigger_rows and p == 2:
                active.add(11)
            if r in trigger_rows and p == 6:
                active.add(10)
            for j in sorted(active):
                tok.append(t)
                lat.append(j)
                val.append(1.0)
            t += 1
    codes = SiteCodes(HOOK, D_SAE, torch.tensor(token_row), torch.tensor(token_pos),
                      torch.tensor(tok), torch.tensor(lat), torch.tensor(val), n_rows)  # fmt: skip
    data = AuditData([torch.zeros(8, dtype=torch.long)] * n_rows, [PROMPT] * n_rows, [{}] * n_rows)
    return {HOOK: codes}, data


def test_shared_prompt_latent_is_found() -> None:
    trigger_rows = set(range(0, 200, 20))
    codes, data = dataset(200, trigger_rows)
    result = search_trigger(codes, data, sorted(trigger_rows), permutations=100)
    assert result.found
    assert result.candidates[0][:2] == (HOOK, 11)
    assert float(result.rate_in[HOOK][11]) == 1.0 and float(result.rate_out[HOOK][11]) == 0.0
    # Latent 10 fires in the same rows but only in completions: not a trigger.
    assert all(j != 10 for _, j, _ in result.candidates)
    summary = result.to_dict()
    assert summary["found"] and summary["candidates"][0]["index"] == 11


def test_rows_without_a_shared_trigger_find_nothing() -> None:
    codes, data = dataset(200, set(range(0, 200, 20)))
    misses = sum(
        search_trigger(
            codes, data, random.Random(s).sample(range(200), 10), permutations=100, seed=s
        ).found
        for s in range(20)
    )
    assert misses <= 3  # 5 % nominal on 20 tries


def test_prompt_firing_ignores_bos_and_completion() -> None:
    codes, data = dataset(3, {1})
    rows, lats = prompt_firing(codes[HOOK], data)
    pairs = set(zip(rows.tolist(), lats.tolist()))
    assert (1, 11) in pairs and (1, 10) not in pairs
