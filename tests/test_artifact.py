"""save_pretrained / from_pretrained: round trip, JSON + safetensors only, mismatch rejection."""

from __future__ import annotations

import json
import os

import pytest
import torch
from factories import ARCHITECTURES, tiny_model, tiny_sae
from safetensors.torch import load_file

from isaerft import ISaeRFTConfig, ISaeRFTModel, component_kinds, read_intervention_config
from isaerft.artifact import CONFIG_FILE, WEIGHTS_FILE

TOKENS = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(3))


def _trained(
    kind: str, arch: str = "standard", hooks=("blocks.1.hook_resid_post",)
) -> ISaeRFTModel:
    saes = [tiny_sae(arch, hook_name=h, seed=i) for i, h in enumerate(hooks)]
    wrapped = ISaeRFTModel(tiny_model(), saes, ISaeRFTConfig(component=kind))
    with torch.no_grad():
        for p in wrapped.trainable_parameters():
            p.add_(torch.randn(p.shape) * 0.2)
    return wrapped


@pytest.mark.parametrize("kind", sorted(component_kinds()))
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_gives_equal_logits(kind, arch, tmp_path):
    wrapped = _trained(kind, arch)
    expected = wrapped(TOKENS)
    wrapped.save_pretrained(tmp_path)
    reloaded = ISaeRFTModel.from_pretrained(tiny_model(), [wrapped.sites[0].sae], tmp_path)
    assert torch.equal(reloaded(TOKENS), expected)


def test_files_are_json_and_safetensors_with_provenance(tmp_path):
    wrapped = _trained("scale_bias", hooks=("blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"))
    wrapped.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert record["isaerft_version"]
    assert record["config"]["component"] == "scale_bias"
    site = record["sites"][0]
    assert site["hook_name"] == "blocks.1.hook_resid_post"
    assert site["d_sae"] == 128 and site["sae_fingerprint"].startswith("sha256:")
    weights = load_file(str(tmp_path / WEIGHTS_FILE))
    assert set(weights) == set(wrapped.trainable_state_dict())
    assert read_intervention_config(tmp_path)["sites"][1]["hook_name"] == "blocks.2.hook_resid_pre"


def test_no_pickle_anywhere(tmp_path):
    _trained("mlp").save_pretrained(tmp_path)
    for path in tmp_path.iterdir():
        assert b"\x80\x04" not in path.read_bytes()[:2]  # pickle protocol header


def test_save_overwrites_atomically_without_temp_leftovers(tmp_path):
    wrapped = _trained("scale")
    wrapped.save_pretrained(tmp_path)
    wrapped.save_pretrained(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_other_sae_is_rejected_by_fingerprint(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    other = tiny_sae("standard", seed=7)
    model = tiny_model()
    with pytest.raises(ValueError, match="fingerprint"):
        ISaeRFTModel.from_pretrained(model, [other], tmp_path)
    assert all(p.requires_grad for p in model.parameters())


def test_other_width_is_rejected(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="d_sae=64"):
        ISaeRFTModel.from_pretrained(tiny_model(), [tiny_sae(d_sae=64)], tmp_path)


def test_other_hook_is_rejected(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no SAE given reads that hook"):
        ISaeRFTModel.from_pretrained(
            tiny_model(), [tiny_sae(hook_name="blocks.0.hook_resid_post")], tmp_path
        )


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved isaerft intervention"):
        ISaeRFTModel.from_pretrained(tiny_model(), [tiny_sae()], tmp_path / "nope")


def test_newer_format_is_refused(tmp_path):
    _trained("scale").save_pretrained(tmp_path)
    record = json.loads((tmp_path / CONFIG_FILE).read_text())
    record["format_version"] = 99
    (tmp_path / CONFIG_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="upgrade isaerft"):
        read_intervention_config(tmp_path)


def test_written_files_get_the_usual_permissions(tmp_path):
    from isaerft._io import write_text

    path = write_text(tmp_path / "report.md", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
