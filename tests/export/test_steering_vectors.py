"""The ``{layer: tensor}`` file for the steering-vectors library."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from isaerft.export import layer_activations, save_steering_vectors
from isaerft.export.steering_vectors import load_layer_activations
from isaerft.export.vectors import SiteVector, SteeringVectors


def _vectors(hooks: dict[str, torch.Tensor]) -> SteeringVectors:
    sites = [SiteVector(hook_name=h, vector=v, kind="exact") for h, v in hooks.items()]
    return SteeringVectors(sites=sites, model_name="tiny", d_model=8, n_layers=4)


def test_layers_are_decoder_block_outputs_summed_per_block(tmp_path):
    a, b, c = torch.randn(8), torch.randn(8), torch.randn(8)
    vectors = _vectors(
        {"blocks.0.hook_resid_post": a, "blocks.3.hook_resid_pre": b, "blocks.2.hook_resid_post": c}
    )
    layers = layer_activations(vectors)
    assert list(layers) == [0, 2]
    torch.testing.assert_close(layers[2], b + c)

    path = save_steering_vectors(vectors, tmp_path / "sv.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["0", "2"]
        assert handle.metadata()["layer_type"] == "decoder_block"
        as_library_reads_it = {int(k): handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    assert all(t.dim() == 1 and t.dtype == torch.float32 for t in as_library_reads_it.values())
    torch.testing.assert_close(as_library_reads_it[0], a)
    assert list(load_layer_activations(path)) == [0, 2]


def test_embeddings_and_non_residual_hooks_are_refused(tmp_path):
    for hook in ("blocks.0.hook_resid_pre", "blocks.1.attn.hook_z"):
        with pytest.raises(ValueError, match=r"embeddings|residual"):
            save_steering_vectors(_vectors({hook: torch.randn(8)}), tmp_path / "sv.safetensors")
    assert not (tmp_path / "sv.safetensors").exists()


def test_native_file_is_not_mistaken_for_a_layers_file(tmp_path):
    path = _vectors({"blocks.1.hook_resid_post": torch.randn(8)}).save(tmp_path / "v.safetensors")
    with pytest.raises(ValueError, match="not a steering-vectors file"):
        load_layer_activations(path)
