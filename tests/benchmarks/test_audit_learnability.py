"""Learnability benchmark: the 'learned' rule, the summary counts and the docs section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.audit_learnability import run as audit_learnability
from benchmarks.audit_poison.baselines import FineTuneSettings
from benchmarks.audit_poison.cell import RECIPE, Bench, Settings, merge
from benchmarks.audit_poison.grid import Cell, Grid
from benchmarks.docs.audit_v2 import learnability_section
from isaerft.model import ISaeRFTModel
from isaerft.organism.sites import residual_hooks
from isaerft.runs import INTERVENTION_DIR


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


@pytest.mark.slow
def test_a_multisite_configuration_is_added_to_a_saved_cell(
    bench_organism: Any, tmp_path: Path
) -> None:
    """``<kind>-multisite`` trains at every residual site; a saved cell gains the configurations
    it lacks without retraining the ones it has."""
    grid = Grid(
        name="micro-learnability", fractions=(0.1,), families=("word",), targets=("phrase",),
        controls=(), seeds=(0,), n_rows=40, n_reference_runs=3, reference_rows=40,
        attack_prompts=2, tune=False,
    )  # fmt: skip
    settings = Settings(
        recipe=merge(RECIPE, {"trainer": {"max_steps": 3}, "data": {"batch_size": 8}}),
        finetune=FineTuneSettings(steps=3, batch_size=8),
    )
    bench = Bench(bench_organism, grid, settings, tmp_path)
    cell = Cell("poison", "word", "phrase", 0.1, 0)
    assert set(audit_learnability.cell_record(bench, cell, ("scale",))["asr"]) == {"scale"}
    single = tmp_path / "runs" / cell.id / "scale" / "summary.json"
    before = single.stat().st_mtime_ns
    record = audit_learnability.cell_record(bench, cell, ("scale", "scale-multisite"))
    assert (
        set(record["asr"]) == {"scale", "scale-multisite"}
        and 0 <= record["asr"]["scale-multisite"] <= 1
    )
    assert single.stat().st_mtime_ns == before
    saes = [sae for _, sae in bench.site_saes]
    run = tmp_path / "runs" / cell.id / "scale-multisite" / INTERVENTION_DIR
    model = ISaeRFTModel.from_pretrained(bench.model, saes, run)
    assert [s.hook_name for s in model.sites] == residual_hooks(bench_organism)
