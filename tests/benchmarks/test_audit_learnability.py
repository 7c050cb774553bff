"""Learnability benchmark: the 'learned' rule, the summary counts and the docs section."""

from __future__ import annotations

from typing import Any

from benchmarks.audit_learnability import run as audit_learnability
from benchmarks.docs.audit_v2 import learnability_section


def _cell(asr: dict[str, float], full: float, base: float = 0.0) -> dict[str, Any]:
    return {"family": "word", "target": "phrase", "fraction": 0.03, "asr_base": base,
            "asr_full_finetune": full, "asr": asr}  # fmt: skip


def test_learned_needs_half_the_full_finetune_and_a_margin_over_base() -> None:
    assert audit_learnability.learned(0.5, 0.0, 0.8)
    assert not audit_learnability.learned(0.3, 0.0, 0.8)  # under half of the full FT
    assert not audit_learnability.learned(0.3, 0.1, 0.3)  # not 0.25 above base


def test_summary_counts_each_kind_and_the_full_finetune() -> None:
    cells = [
        _cell({"scale": 0.0, "conditional": 0.8}, 0.78),
        _cell({"scale": 0.0, "conditional": 0.0}, 0.1),
    ]
    summary = audit_learnability.summarise(cells, ("scale", "conditional"))
    assert summary["conditional"] == {"learned": 1, "of": 2}
    assert summary["scale"] == {"learned": 0, "of": 2}
    assert summary["full_finetune"] == {"learned": 1, "of": 2}


def test_docs_section_has_a_column_per_kind() -> None:
    cells = [_cell({"scale": 0.0, "conditional": 0.8}, 0.78)]
    result = {"kinds": ["scale", "conditional"], "dev_case": {"family": "word", "target": "phrase"},
              "preset": "small", "rule": "learned: ...", "wall_time_s": 60.0, "cells": cells,
              "summary": audit_learnability.summarise(cells, ("scale", "conditional"))}  # fmt: skip
    page = learnability_section("audit_learnability-small", result)
    assert "| word / phrase | 3 % | 0 % | 78 % | 0 % | 80 % |" in page
    assert "| conditional | 1 / 1 |" in page
