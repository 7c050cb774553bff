"""Audit v2 benchmark: the ground-truth latents that fire on their words in the audited rows."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.audit_v2 import run as audit_v2
from benchmarks.audit_v2.firing import firing_truth
from benchmarks.docs.audit_v2 import audit_v2_section
from isaerft.audit.data import AuditData

HOOK = "blocks.0.hook_resid_pre"
OWL, CASTLE, OTHER, CONTEXT = 5, 6, 7, 9


class _Tokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return {"owl": [OWL], "castle": [CASTLE], "two words": [OTHER, OTHER]}[text.strip()]


class _Model:
    """Latent 0 reads ``owl`` only right after the context token (as a name at the start of a
    speech would be read); latent 1 reads ``castle`` anywhere; the SAE is the identity."""

    tokenizer = _Tokenizer()

    def run_with_cache(self, ids: torch.Tensor, names_filter: str) -> tuple[None, dict[str, Any]]:
        tokens = ids[0].tolist()
        codes = torch.zeros(1, len(tokens), 2)
        for pos, token in enumerate(tokens):
            codes[0, pos, 0] = float(token == OWL and pos > 0 and tokens[pos - 1] == CONTEXT)
            codes[0, pos, 1] = float(token == CASTLE)
        return None, {names_filter: codes}


class _Sae:
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _data(*rows: tuple[list[int], list[int]]) -> AuditData:
    ids = [torch.tensor([1, *prompt, *answer]) for prompt, answer in rows]
    return AuditData(ids, [1 + len(prompt) for prompt, _ in rows], [{} for _ in rows])


def test_a_truth_latent_silent_on_its_word_in_the_poisoned_rows_is_left_out() -> None:
    data = _data(([8, OWL, OTHER], [CASTLE, OTHER]), ([OWL], [OTHER, CASTLE]), ([CONTEXT, OWL], []))
    truth = {"trigger": [0], "target": [1], "any": [0, 1]}
    words = {"trigger": ["owl", "two words"], "target": ["castle"]}
    # poisoned rows 0 and 1: latent 0 never fires on their owl
    out = firing_truth(_Model(), _Sae(), HOOK, data, [0, 1], truth, words)
    assert out == {"trigger": [], "target": [1], "any": [1]}
    # with row 2 (owl after the context token) it fires on 1 of 3 owls: kept
    out = firing_truth(_Model(), _Sae(), HOOK, data, [0, 1, 2], truth, words)
    assert out["trigger"] == [0] and out["any"] == [0, 1]
    # a target word in the prompt is not the target
    out = firing_truth(_Model(), _Sae(), HOOK, _data(([CASTLE], [OTHER])), [0], truth, words)
    assert out["target"] == []


def test_the_summary_and_the_page_report_the_firing_recall() -> None:
    base = {
        "kind": "poison", "family": "word", "target": "phrase", "fraction": 0.03,
        "flagged": True, "recall_at_10": {"any": 0.5}, "row_auroc": 1.0,
        "train_s": 1.0, "audit_s": 2.0,
        "learnability": {"asr_base": 0.0, "asr_full_finetune": 0.8, "asr_candidate": 0.1,
                         "full_finetune_learned": True},
    }  # fmt: skip
    records = [
        base | {"recall_at_10_firing": {"any": 1.0}},
        base | {"recall_at_10_firing": {"any": 0.5}},
        base,  # a record from before the reading
    ]
    summary = audit_v2.summarise(records, audit_v2.PLANS["smoke"])
    assert summary["naming"]["mean_recall_at_10_firing_on_detected"] == 0.75
    assert summary["naming"]["detected_with_firing_recall_ge_0.9"] == "1/2"
    result = {
        "summary": summary, "dev_case": {"family": "word", "target": "phrase"},
        "preset": "small", "families": {}, "targets": {}, "wall_time_s": 60.0,
        "machine": {"cpu_count": 2},
    }  # fmt: skip
    page = audit_v2_section("x", result)
    assert "fire on their words in the poisoned rows (detected with >= 0.9) | 0.75 (1/2) |" in page
