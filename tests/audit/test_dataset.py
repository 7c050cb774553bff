"""``audit_dataset`` with an existing candidate run: the references repeat its recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _audit(tiny_runs: Any, suspect: Path, out: Path, **kwargs: Any) -> Any:
    from isaerft.audit import audit_dataset

    setup = tiny_runs.setup
    return audit_dataset(
        suspect,
        setup.clean,
        model=str(setup.model_dir),
        sae=str(setup.sae_dir),
        out_dir=out,
        candidate_run=tiny_runs.candidate,
        n_reference_runs=3,
        **kwargs,
    )


def test_an_existing_run_is_judged_with_its_own_recipe(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft.audit import AuditConfig

    result = _audit(
        tiny_runs, tiny_runs.setup.poison, tmp_path / "audit", config=AuditConfig(baselines=False)
    )
    report = result.report
    assert report["candidate"]["source"] == str(tiny_runs.candidate)
    assert report["comparability"] == {"same_recipe": True, "differences": {}}
    assert not (tmp_path / "audit" / "runs" / "candidate").exists()
    assert len(report["references"]) == 3


def test_a_run_trained_on_other_data_is_refused(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="not on the audited"):
        _audit(tiny_runs, tiny_runs.setup.decoy, tmp_path / "audit")
    with pytest.raises(ValueError, match="not both"):
        _audit(tiny_runs, tiny_runs.setup.poison, tmp_path / "a2", recipe={"optim": {"lr": 0.01}})
