"""Opening interventions from bare folders and run directories."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel, save_model
from isaerft.export import load_isaerft_model

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture
def saved(tmp_path):
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    save_model(model, tmp_path / "model")
    sae.save_model(str(tmp_path / "sae"))
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="bias"))
    with torch.no_grad():
        wrapped.sites[0].component.bias.normal_()
    wrapped.save_pretrained(tmp_path / "run" / "intervention")
    return tmp_path, wrapped


def test_intervention_folder_or_run_layout_with_specs(saved):
    root, wrapped = saved
    specs = {"model_spec": str(root / "model"), "sae_specs": [str(root / "sae")]}
    for path in (root / "run", root / "run" / "intervention"):
        loaded = load_isaerft_model(path, **specs)
        assert torch.equal(loaded.sites[0].component.bias, wrapped.sites[0].component.bias)


def test_clear_errors(saved):
    root, _ = saved
    with pytest.raises(FileNotFoundError, match="not found"):
        load_isaerft_model(root / "missing")
    with pytest.raises(ValueError, match="--model SPEC --sae SPEC"):
        load_isaerft_model(root / "run")
    with pytest.raises(FileNotFoundError, match="neither a training run"):
        load_isaerft_model(root / "model", model_spec=str(root / "model"), sae_specs=["x"])
