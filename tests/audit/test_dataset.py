"""``audit_dataset`` with an existing candidate run: the references repeat its recipe."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_an_existing_run_is_judged_with_its_own_recipe(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft.audit import AuditConfig, audit_dataset

    setup = tiny_runs.setup
    result = audit_dataset(
        setup.poison,
        setup.clean,
        model=str(setup.model_dir),
        sae=str(setup.sae_dir),
        out_dir=tmp_path / "audit",
        candidate_run=tiny_runs.candidate,
        n_reference_runs=3,
        config=AuditConfig(baselines=False),
    )
    report = result.report
    assert report["candidate"]["source"] == str(tiny_runs.candidate)
    assert report["comparability"] == {"same_recipe": True, "differences": {}}
    assert not (tmp_path / "audit" / "runs" / "candidate").exists()
    assert len(report["references"]) == 3


def test_a_run_trained_on_other_data_is_refused(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft.audit import audit_dataset

    setup = tiny_runs.setup
    with pytest.raises(ValueError, match="not on the audited"):
        audit_dataset(
            setup.decoy,
            setup.clean,
            model=str(setup.model_dir),
            sae=str(setup.sae_dir),
            out_dir=tmp_path / "audit",
            candidate_run=tiny_runs.candidate,
            n_reference_runs=3,
        )
    with pytest.raises(ValueError, match="not both"):
        audit_dataset(
            setup.poison,
            setup.clean,
            model=str(setup.model_dir),
            sae=str(setup.sae_dir),
            out_dir=tmp_path / "audit2",
            candidate_run=tiny_runs.candidate,
            recipe={"optim": {"lr": 0.01}},
        )
