"""Trigger search: a prompt latent shared by the behaviour rows is found, random rows find none."""

from __future__ import annotations

import random

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.trigger import length_strata, prompt_firing, search_trigger

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


def test_thresholds_for_other_rates_come_from_the_same_permutation_null() -> None:
    codes, data = dataset(200, set(range(0, 200, 20)))
    rows = random.Random(1).sample(range(200), 10)
    result = search_trigger(codes, data, rows, fpr=0.05, permutations=100)
    assert len(result.null) == 100
    assert result.threshold_at(0.05) == result.threshold
    assert result.threshold_at(0.01) >= result.threshold >= result.threshold_at(0.5)


def _length_confounded(n_rows: int = 300) -> tuple[dict[str, SiteCodes], AuditData, list[int]]:
    """Half the rows ask for a long answer (latent 9 fires in their prompt, like "tell me a
    story"); the behaviour rows lean towards them, as top-scoring rows do, with no trigger."""
    rng = random.Random(0)
    token_row, token_pos, tok, lat, ids, prompts = [], [], [], [], [], []
    t = 0
    for r in range(n_rows):
        long = r % 2 == 0
        length = PROMPT + (12 if long else 4)
        for p in range(length):
            token_row.append(r)
            token_pos.append(p)
            active = {j for j in range(8) if rng.random() < 0.2}
            if long and p == 1:
                active.add(9)
            for j in sorted(active):
                tok.append(t)
                lat.append(j)
            t += 1
        ids.append(torch.zeros(length, dtype=torch.long))
        prompts.append(PROMPT)
    codes = SiteCodes(HOOK, D_SAE, torch.tensor(token_row), torch.tensor(token_pos),
                      torch.tensor(tok), torch.tensor(lat), torch.ones(len(lat)), n_rows)  # fmt: skip
    data = AuditData(ids, prompts, [{}] * n_rows)
    behaviour = rng.sample(range(0, n_rows, 2), 30) + rng.sample(range(1, n_rows, 2), 10)
    return {HOOK: codes}, data, behaviour


def test_length_matched_null_does_not_take_answer_length_for_a_trigger() -> None:
    codes, data, rows = _length_confounded()
    plain = search_trigger(codes, data, rows, permutations=100)
    assert plain.found and plain.candidates[0][1] == 9  # the confound passes for a trigger
    strata = length_strata(data)
    assert len(set(strata.tolist())) >= 2
    matched = search_trigger(codes, data, rows, permutations=100, strata=strata)
    assert not matched.found


def test_length_matched_null_still_finds_a_real_trigger() -> None:
    trigger_rows = set(range(0, 200, 20))
    codes, data = dataset(200, trigger_rows)
    result = search_trigger(
        codes, data, sorted(trigger_rows), permutations=100, strata=length_strata(data)
    )
    assert result.found and result.candidates[0][1] == 11
