"""Audit v2 benchmark: the ground-truth latents that fire on their words in the audited rows."""

from __future__ import annotations

import torch

from benchmarks.audit_v2 import run as audit_v2
from benchmarks.audit_v2.firing import firing_truth, single_tokens
from benchmarks.docs.audit_v2 import audit_v2_section
from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData

OWL, CASTLE, OTHER, CONTEXT = 5, 6, 7, 9


def _data(*rows: tuple[list[int], list[int]]) -> AuditData:
    ids = [torch.tensor([1, *prompt, *answer]) for prompt, answer in rows]
    return AuditData(ids, [1 + len(prompt) for prompt, _ in rows], [{} for _ in rows])


def _codes(data: AuditData) -> SiteCodes:
    """Latent 0 reads ``owl`` only right after the context token (as a name at the start of a
    speech would be read); latent 1 reads ``castle`` anywhere."""
    token_row, token_pos, tok, lat = [], [], [], []
    for r, ids in enumerate(data.ids):
        row = ids.tolist()
        for pos, token in enumerate(row):
            fires = [0] if token == OWL and pos > 0 and row[pos - 1] == CONTEXT else []
            fires += [1] if token == CASTLE else []
            tok += [len(token_row)] * len(fires)
            lat += fires
            token_row.append(r)
            token_pos.append(pos)
    return SiteCodes(
        "blocks.0.hook_resid_pre", 2, torch.tensor(token_row), torch.tensor(token_pos),
        torch.tensor(tok, dtype=torch.long), torch.tensor(lat, dtype=torch.long),
        torch.ones(len(tok)), len(data),
    )  # fmt: skip


def test_a_truth_latent_silent_on_its_word_in_the_poisoned_rows_is_left_out() -> None:
    data = _data(([8, OWL, OTHER], [CASTLE, OTHER]), ([OWL], [OTHER, CASTLE]), ([CONTEXT, OWL], []))
    truth = {"trigger": [0], "target": [1], "any": [0, 1]}
    tokens = {"trigger": {OWL}, "target": {CASTLE}}
    # rows 0 and 1: latent 0 never fires on their owl
    rows = data.subset([0, 1])
    assert firing_truth(_codes(rows), rows, truth, tokens) == {
        "trigger": [], "target": [1], "any": [1]
    }  # fmt: skip
    # with row 2 (owl after the context token) it fires on 1 of 3 owls: kept
    out = firing_truth(_codes(data), data, truth, tokens)
    assert out["trigger"] == [0] and out["any"] == [0, 1]
    # a target word in the prompt is not the target
    rows = _data(([CASTLE], [OTHER]))
    assert firing_truth(_codes(rows), rows, truth, tokens)["target"] == []


def test_only_one_token_words_are_read() -> None:
    class Tokenizer:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return {"owl": [OWL], "castle": [CASTLE], "two words": [OTHER, OTHER]}[text.strip()]

    assert single_tokens(Tokenizer(), ["owl", "two words", "castle"]) == {OWL, CASTLE}


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
