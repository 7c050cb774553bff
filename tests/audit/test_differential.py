"""Differential audit: a start run on trusted rows, every run a sparse delta from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from isaerft._io import read_json
from isaerft.audit import AuditConfig, audit_dataset, audit_runs
from isaerft.audit.runs import RunEdits

TINY_RECIPE = {
    "data": {"batch_size": 8},
    "optim": {"lr": 0.05},
    "trainer": {"max_steps": 6},
}


@pytest.fixture(scope="module")
def differential(tiny_audit: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("differential") / "audit"
    # The tiny clean set holds 2x the suspect's rows, not 4x: the shares overlap (and say so).
    with pytest.warns(UserWarning, match="share rows"):
        return audit_dataset(
            tiny_audit.poison,
            tiny_audit.clean,
            model=str(tiny_audit.model_dir),
            sae=str(tiny_audit.sae_dir),
            out_dir=out,
            recipe=TINY_RECIPE,
            n_reference_runs=3,
            config=AuditConfig(baselines=False),
            differential=True,
        )


def test_every_run_starts_from_the_trusted_start(differential) -> None:  # type: ignore[no-untyped-def]
    report = differential.report
    out = Path(differential.paths["json"]).parent
    start = out / "runs" / "start"
    assert report["differential"]["start_from"]["path"] == str(start.resolve())
    for run in [report["candidate"]["source"], *report["references"]]:
        assert read_json(Path(run) / "run.json")["start_from"]["path"] == str(start.resolve())
    assert (out / "reference-data" / "start.jsonl").is_file()
    assert "differential" in (out / "report.md").read_text()


def test_the_audit_reads_each_run_as_its_delta(differential) -> None:  # type: ignore[no-untyped-def]
    report = differential.report
    start = RunEdits.load(report["differential"]["start_from"]["path"])
    cand = RunEdits.load(report["candidate"]["source"])
    (hook,) = cand.hook_names
    reported = torch.tensor(report["distributions"]["edits"][hook]["scale"])
    expected = cand.vector(hook, "scale") - start.vector(hook, "scale")
    assert torch.allclose(reported, expected)
    assert not torch.allclose(reported, cand.vector(hook, "scale"))


def test_deltas_and_runs_from_identity_are_not_compared(differential, tiny_runs) -> None:  # type: ignore[no-untyped-def]
    cand = differential.report["candidate"]["source"]
    with pytest.raises(ValueError, match="same start_from"):
        audit_runs(cand, tiny_runs.references, config=AuditConfig(baselines=False))
    with pytest.raises(ValueError, match="same start_from"):
        audit_runs(tiny_runs.candidate, differential.report["references"])


def test_an_existing_differential_candidate_keeps_its_start(
    differential, tiny_audit, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    cand = differential.report["candidate"]["source"]
    with pytest.raises(ValueError, match="candidate_run alone"):
        audit_dataset(
            tiny_audit.poison,
            tiny_audit.clean,
            model=str(tiny_audit.model_dir),
            sae=str(tiny_audit.sae_dir),
            out_dir=tmp_path / "a",
            candidate_run=cand,
            differential=True,
        )
    with pytest.warns(UserWarning, match="share rows"):
        again = audit_dataset(
            tiny_audit.poison,
            tiny_audit.clean,
            model=str(tiny_audit.model_dir),
            sae=str(tiny_audit.sae_dir),
            out_dir=tmp_path / "b",
            candidate_run=cand,
            n_reference_runs=3,
            config=AuditConfig(baselines=False),
        )
    assert again.report["differential"] == differential.report["differential"]
    assert again.report["comparability"]["same_recipe"]
