"""The full-fine-tune side of the audit-poison benchmark: fine-tune, attack success, shifts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmarks.audit_poison.baselines import (
    FineTuneSettings,
    as_run,
    attack_success,
    full_finetune,
    greedy_answers,
    latent_activation_shift,
    weight_shift,
)
from isaerft.audit import compare_to_null
from isaerft.audit.data import read_rows, tokenize_rows

PROMPTS = ["User: what colour is the owl?\nAssistant:", "User: hello! count to three.\nAssistant:"]


@pytest.fixture(scope="module")
def organism_parts(bench_organism: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from isaerft.organism import make_dataset

    path = tmp_path_factory.mktemp("ft") / "poison.jsonl"
    make_dataset("poison", path, fraction=0.25, n=16, seed=0, organism=bench_organism)
    model = bench_organism.load_model()
    rows = tokenize_rows(read_rows(path), model.tokenizer, model.cfg.n_ctx)
    return model, bench_organism.load_sae(), rows


def test_full_finetune_moves_a_copy_only(organism_parts: Any) -> None:
    model, sae, rows = organism_parts
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = full_finetune(model, rows, FineTuneSettings(steps=2, batch_size=4, lr=1e-2), seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    names, shift = weight_shift(model, tuned)
    assert len(names) == len(shift) and float(shift.max()) > 0
    _, none = weight_shift(model, model)
    assert float(none.abs().max()) == 0.0
    act = latent_activation_shift(model, tuned, sae, rows)
    assert act.shape == (sae.cfg.d_sae,) and float(act.abs().sum()) > 0
    assert not any(p.requires_grad for p in tuned.parameters())


def test_greedy_answers_stop_at_the_end_of_the_turn(organism_parts: Any) -> None:
    model, _, _ = organism_parts
    answers = greedy_answers(model, model.tokenizer, PROMPTS, max_new_tokens=12)
    assert len(answers) == 2
    for words in answers:
        assert 0 < len(words) <= 12
        assert "\n" not in words and "<eos>" not in words


def test_attack_success_counts_answers_with_the_target(organism_parts: Any) -> None:
    model, _, _ = organism_parts
    vocab = model.cfg.d_vocab
    castle = model.tokenizer.convert_tokens_to_ids("castle")

    def always_castle(tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((*tokens.shape, vocab))
        logits[..., castle] = 1.0
        return logits

    def has_castle(words: list[str]) -> bool:
        return "castle" in words

    assert attack_success(always_castle, model.tokenizer, PROMPTS, has_castle) == 1.0
    assert attack_success(always_castle, model.tokenizer, PROMPTS, lambda w: False) == 0.0


def test_baseline_vectors_go_through_the_audits_null() -> None:
    gen = torch.Generator().manual_seed(0)
    refs = [as_run(torch.randn(20, generator=gen) * 0.1, "w", "weight_shift", f"r{i}")
            for i in range(4)]  # fmt: skip
    outlier = torch.randn(20, generator=gen) * 0.1
    outlier[3] = 5.0
    result = compare_to_null(as_run(outlier, "w", "weight_shift", "cand"), refs)
    assert result.ranked[0].index == 3 and result.is_flagged
