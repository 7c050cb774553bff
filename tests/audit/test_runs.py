"""Reading a run's edits without its model, and refusing runs that are not comparable."""

from __future__ import annotations

import pytest
import torch
from audit.helpers import HOOK
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.audit.runs import RunEdits, check_same_latents, intervention_dir


def test_load_matches_the_live_model(tmp_path) -> None:
    model = ISaeRFTModel(
        tiny_model(), tiny_sae(hook_name=HOOK), ISaeRFTConfig(component="scale_bias")
    )
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "run" / "intervention")
    loaded = RunEdits.load(tmp_path / "run")
    live = RunEdits.from_model(model)
    assert loaded.component == "scale_bias" and loaded.hook_names == [HOOK]
    for kind in ("scale", "bias"):
        torch.testing.assert_close(loaded.vector(HOOK, kind), live.vector(HOOK, kind))
    assert intervention_dir(tmp_path / "run" / "intervention") == tmp_path / "run" / "intervention"


def test_incomparable_runs_are_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        intervention_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        intervention_dir(tmp_path / "empty")
    a = RunEdits.from_model(ISaeRFTModel(tiny_model(), tiny_sae(hook_name=HOOK)))
    b = RunEdits.from_model(ISaeRFTModel(tiny_model(), tiny_sae(hook_name=HOOK, seed=1)))
    with pytest.raises(ValueError, match="different SAE"):
        check_same_latents(a, [b])
    c = RunEdits.from_model(
        ISaeRFTModel(tiny_model(), tiny_sae(hook_name=HOOK), ISaeRFTConfig(component="bias"))
    )
    with pytest.raises(ValueError, match="same component kind"):
        check_same_latents(a, [c])
