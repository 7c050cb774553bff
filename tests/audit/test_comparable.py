"""Like with like: references trained with another recipe are refused, or the verdict says so."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from isaerft.audit.comparable import compare_recipes, mismatch_message, recipe_differences
from isaerft.runs import RUN_FORMAT, RUN_FORMAT_VERSION

RECIPE: dict[str, Any] = {
    "intervention": {"component": "scale", "l1_coefficient": 1e-4},
    "objective": {"kind": "sft"},
    "optim": {"optimizer": "adam", "lr": 0.1},
    "data": {"batch_size": 16, "path": "a.jsonl"},
    "trainer": {"max_steps": 150, "seed": 0},
}


def _run(root: Path, name: str, recipe: dict[str, Any], steps: int = 150, rows: int = 100) -> Path:
    folder = root / name
    folder.mkdir()
    record = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "recipe": recipe}
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "summary.json").write_text(json.dumps({"steps": steps, "rows": rows}))
    return folder


def test_seeds_and_data_may_differ(tmp_path: Path) -> None:
    other = copy.deepcopy(RECIPE)
    other["trainer"]["seed"], other["data"]["path"] = 3, "b.jsonl"
    cand = _run(tmp_path, "cand", RECIPE)
    assert compare_recipes(cand, [_run(tmp_path, "ref", other)]) == {}


def test_a_setting_a_run_predates_counts_as_its_default(tmp_path: Path) -> None:
    """A run recorded before ``reps_beta`` existed trained as its default (2.0) does."""
    newer = copy.deepcopy(RECIPE)
    newer["objective"]["reps_beta"] = 2.0
    cand = _run(tmp_path, "cand", newer)
    assert compare_recipes(cand, [_run(tmp_path, "old", RECIPE)]) == {}
    newer["objective"]["reps_beta"] = 4.0
    other = _run(tmp_path, "cand4", newer)
    diff = compare_recipes(other, [_run(tmp_path, "old2", RECIPE)])
    assert diff[str(tmp_path / "old2")] == ["objective.reps_beta: 4.0 vs 2.0"]


@pytest.mark.parametrize(
    ("change", "steps", "rows", "expected"),
    [
        ({"optim": {"optimizer": "adam", "lr": 0.01}}, 150, 100, "optim.lr: 0.1 vs 0.01"),
        ({"intervention": {"component": "scale", "l1_coefficient": 1e-2}}, 150, 100, "l1"),
        ({"data": {"batch_size": 8, "path": "a.jsonl"}}, 150, 100, "data.batch_size: 16 vs 8"),
        ({}, 300, 100, "optimizer steps: 150 vs 300"),
        ({}, 150, 400, "training rows: 100 vs 400"),
    ],
)
def test_every_training_difference_is_named(
    tmp_path: Path, change: dict[str, Any], steps: int, rows: int, expected: str
) -> None:
    ref_recipe = {**copy.deepcopy(RECIPE), **change}
    cand = _run(tmp_path, "cand", RECIPE)
    ref = _run(tmp_path, "ref", ref_recipe, steps, rows)
    diff = compare_recipes(cand, [ref])
    assert list(diff) == [str(ref)] and any(expected in d for d in diff[str(ref)])
    message = mismatch_message(diff)
    assert "\n" not in message and str(ref) in message and "--allow-recipe-mismatch" in message


def test_bare_interventions_have_nothing_to_compare(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    assert compare_recipes(tmp_path / "bare", [tmp_path / "bare"]) == {}
    assert (
        recipe_differences(
            {"recipe": RECIPE, "summary": {}}, {"recipe": RECIPE, "summary": {"steps": 5}}
        )
        == []
    )


def test_audit_runs_refuses_then_warns(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from audit.helpers import clean_subset, train_run

    from isaerft.audit import AuditConfig, audit_runs

    odd = train_run(tiny_runs.setup, clean_subset(tiny_runs.setup, 9), 9, tmp_path / "odd", steps=3)
    refs = [*tiny_runs.references[:2], odd]
    with pytest.raises(ValueError, match="optimizer steps: 6 vs 3"):
        audit_runs(tiny_runs.candidate, refs)
    result = audit_runs(
        tiny_runs.candidate,
        refs,
        config=AuditConfig(allow_recipe_mismatch=True, baselines=False),
    )
    assert result.report["comparability"]["same_recipe"] is False
    assert "WARNING" in result.report["verdict"]["kind"]
    assert result.report["verdict"]["comparable"] is False
