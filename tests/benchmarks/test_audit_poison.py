"""The audit-poison benchmark end to end on the tiny organism, with a micro grid and a few
optimizer steps: every code path (datasets, runs, fine-tunes, tuning, audits, summary, JSON,
docs) runs; the numbers themselves mean nothing at this size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.audit_poison.baselines import FineTuneSettings
from benchmarks.audit_poison.cell import RECIPE, Settings, merge
from benchmarks.audit_poison.grid import Cell, Grid
from benchmarks.audit_poison.scoring import ground_truth
from benchmarks.common import write_result

pytestmark = pytest.mark.slow

MICRO = Grid(
    name="micro",
    fractions=(0.1,),
    families=("word",),
    targets=("phrase",),
    controls=("decoy",),
    seeds=(0,),
    n_rows=40,
    n_reference_runs=3,
    reference_rows=40,
    attack_prompts=2,
    tune=True,
)


MICRO_SETTINGS = Settings(
    recipe=merge(RECIPE, {"trainer": {"max_steps": 3}, "data": {"batch_size": 8}}),
    finetune=FineTuneSettings(steps=3, batch_size=8),
)


@pytest.fixture(scope="module")
def micro_result(bench_organism: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from benchmarks.audit_poison.run import run_benchmark

    work = tmp_path_factory.mktemp("audit_poison")
    return run_benchmark(
        MICRO, preset="tiny", settings=MICRO_SETTINGS, work_dir=work, log=lambda _msg: None
    )


def test_result_has_every_part(micro_result: dict[str, Any]) -> None:
    r = micro_result
    assert r["benchmark"] == "audit_poison" and r["organism"]["preset"] == "tiny"
    assert {c["kind"] for c in r["cells"]} == {"poison", "decoy"}
    poison = next(c for c in r["cells"] if c["kind"] == "poison")
    assert poison["counts"]["poisoned"] == 4
    for method in ("audit", "audit_change", "dataset_diff", "activation_shift", "weight_shift"):
        assert isinstance(poison["scores"][method], float), method
    assert set(poison["scores"]["topk_intersection_z"]) >= {"1", "5", "10"}
    assert set(poison["recall"]) >= {"audit", "dataset_diff", "activation_shift"}
    assert 0.0 <= poison["rows"]["row_auroc"] <= 1.0
    attack = poison["finetune"]["attack"]
    assert attack["prompts"] == 2 and isinstance(attack["learned"], bool)
    # The combined score is above 1 exactly when the audit's own report flags the dataset.
    assert (poison["verdict"]["score"] > 1.0) == poison["verdict"]["report_flagged"]
    assert r["hyperparameters"]["tuning"]["tuned"] is True
    assert len(r["hyperparameters"]["tuning"]["audit_null"]) >= 2
    group = r["summary"]["groups"][0]
    assert group["split"] == "dev"
    assert group["detection"]["decoy"]["0.05"]["audit"]["n_control"] == 1
    assert "machine" in r and r["timings_s"]["total"] > 0


def test_result_is_strict_json_and_renders(micro_result: dict[str, Any], tmp_path: Path) -> None:
    from benchmarks.docs.page import load_results, render

    path = write_result(tmp_path / "results" / "audit_poison-micro-tiny.json", micro_result)
    text = path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    page = render(load_results(tmp_path / "results"), tmp_path / "img", "img")
    assert "## Audit-poison: micro mode" in page
    assert "Against decoy, over all cells, the audit beats" in page
    assert (tmp_path / "img" / "audit_poison-micro-tiny.png").is_file()


def test_rerun_reuses_finished_runs(micro_result: dict[str, Any], bench_organism: Any) -> None:
    from benchmarks.audit_poison.cell import Bench

    work = Path(micro_result["reference_runs"][0]).parents[1]
    bench = Bench(bench_organism, MICRO, MICRO_SETTINGS, work)
    cell = Cell("poison", "word", "phrase", 0.1, 0)
    run_dir = work / "runs" / cell.id
    before = (run_dir / "summary.json").stat().st_mtime_ns
    bench.train_cell(cell)
    assert (run_dir / "summary.json").stat().st_mtime_ns == before
    # Runs trained with other settings are never mistaken for this setup's.
    with pytest.raises(ValueError, match="another grid or other settings"):
        Bench(bench_organism, MICRO, Settings(), work)
    # Other audit settings alone are the same runs (audit records say which settings made them).
    audit = dataclasses.replace(MICRO_SETTINGS.audit, row_tokens=0)
    Bench(bench_organism, MICRO, dataclasses.replace(MICRO_SETTINGS, audit=audit), work)


def test_ground_truth_names_trigger_and_target_latents(bench_organism: Any) -> None:
    truth = ground_truth(bench_organism.labels(), Cell("poison", "word", "phrase", 0.1, 0))
    assert set(truth) == {"trigger", "target", "any"}
    assert set(truth["any"]) == set(truth["trigger"]) | set(truth["target"])
    assert truth["target"], "the target phrase's words have latents in every organism"
