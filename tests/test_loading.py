"""load_model / load_sae: local folders round-trip; hub paths fail clearly before any download."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_model, tiny_sae
from sae_lens import SAE

from isaerft import load_model, load_sae, sae_fingerprint, save_model


def test_local_model_round_trip(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    tokens = torch.randint(0, 50, (2, 7))
    assert torch.equal(loaded(tokens), model(tokens))
    assert loaded.cfg.n_layers == model.cfg.n_layers


def test_local_model_dtype_override(tmp_path):
    save_model(tiny_model(), tmp_path / "m")
    assert load_model(tmp_path / "m", dtype="bfloat16").cfg.dtype == torch.bfloat16


def test_saelens_folder_round_trip(tmp_path):
    sae = tiny_sae("jumprelu")
    sae.save_model(tmp_path / "s")
    loaded = load_sae(tmp_path / "s")
    assert sae_fingerprint(loaded) == sae_fingerprint(sae)
    assert loaded.cfg.metadata.hook_name == sae.cfg.metadata.hook_name
    assert isinstance(SAE.load_from_disk(str(tmp_path / "s")), SAE)


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(ValueError, match=r"isaerft\.save_model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match=r"cfg\.json"):
        load_sae(tmp_path)


def test_unknown_release_is_explained():
    with pytest.raises(ValueError, match="unknown SAELens release"):
        load_sae("no-such-release::layer_0")


def test_unknown_sae_id_lists_valid_ids():
    with pytest.raises(ValueError, match="has no sae_id"):
        load_sae("gemma-scope-2b-pt-res-canonical", "layer_99/width_16k/canonical")


def test_release_needs_sae_id():
    with pytest.raises(ValueError, match="sae_id"):
        load_sae("gemma-scope-2b-pt-res-canonical")


def test_hub_sae_stops_before_download_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        load_sae("gemma-scope-2b-pt-res-canonical::layer_12/width_16k/canonical")


def test_hub_model_without_network_is_explained(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises((OSError, ValueError)):
        load_model("gpt2")


def test_bad_dtype_name():
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model("gpt2", dtype="float8")


@pytest.mark.slow
def test_organism_specs_load_as_on_the_command_line(tiny_organism):
    model = load_model("organism:tiny")
    sae = load_sae("organism:tiny")
    assert model.cfg.d_model == tiny_organism.load_model().cfg.d_model
    assert sae_fingerprint(sae) == sae_fingerprint(tiny_organism.load_sae())


def test_unknown_organism_preset_is_explained():
    with pytest.raises(ValueError, match="organism:<preset>"):
        load_model("organism:huge")
