"""llama.cpp control vectors: read back by ``gguf.GGUFReader`` and by a byte-level parser."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf_bytes import GGML_TYPE_F32, parse_gguf

from isaerft.export import read_control_vector, save_gguf, steer, vectors_from_model
from isaerft.export.vectors import SiteVector, SteeringVectors


def _vectors(
    hooks: dict[str, torch.Tensor], n_layers: int = 3, d_model: int = 32
) -> SteeringVectors:
    sites = [SiteVector(hook_name=h, vector=v, kind="exact") for h, v in hooks.items()]
    return SteeringVectors(sites=sites, model_name="tiny", d_model=d_model, n_layers=n_layers)


def test_gguf_passes_both_readers(tmp_path):
    a, b, c = (torch.randn(32) for _ in range(3))
    vectors = _vectors(
        {
            "blocks.1.hook_resid_post": a,
            "blocks.2.hook_resid_pre": b,
            "blocks.2.hook_resid_post": c,
        },
    )
    path = save_gguf(vectors, tmp_path / "cv.gguf", model_hint="llama")

    version, meta, tensors = parse_gguf(path)
    assert version == 3
    assert meta["general.architecture"] == "controlvector"
    assert meta["controlvector.model_hint"] == "llama"
    assert meta["controlvector.layer_count"] == 2
    # blocks.1 resid_post and blocks.2 resid_pre are the same tensor: one summed direction.
    assert sorted(tensors) == ["direction.1", "direction.2"]
    for dims, ggml_type, _ in tensors.values():
        assert ggml_type == GGML_TYPE_F32 and len(dims) == 1 and dims[0] == 32
    np.testing.assert_allclose(tensors["direction.1"][2], (a + b).numpy(), rtol=1e-6)
    np.testing.assert_allclose(tensors["direction.2"][2], c.numpy(), rtol=1e-6)

    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "controlvector"
    assert reader.fields["controlvector.layer_count"].contents() == 2
    by_name = {t.name: t for t in reader.tensors}
    assert set(by_name) == {"direction.1", "direction.2"}
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in by_name.values())
    np.testing.assert_allclose(np.asarray(by_name["direction.2"].data), c.numpy(), rtol=1e-6)
    del reader

    loaded = read_control_vector(path)
    assert list(loaded) == [1, 2]
    torch.testing.assert_close(loaded[1], a + b)


@pytest.mark.parametrize(
    "hook",
    [
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_pre",
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_mlp_out",
    ],
)
def test_refused_sites_write_no_file(tmp_path, hook):
    vectors = _vectors({"blocks.2.hook_resid_post": torch.randn(32), hook: torch.randn(32)})
    with pytest.raises(ValueError, match=r"llama\.cpp|residual"):
        save_gguf(vectors, tmp_path / "cv.gguf")
    assert list(tmp_path.iterdir()) == []


def test_wrong_width_is_refused(tmp_path):
    vectors = _vectors({"blocks.1.hook_resid_post": torch.randn(16)})
    with pytest.raises(ValueError, match="d_model=32"):
        save_gguf(vectors, tmp_path / "cv.gguf")


def _raw_gguf(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    writer = gguf.GGUFWriter(str(path), "controlvector")
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"direction.0": np.zeros(8, np.float32)}, r"direction\.0"),
        ({"direction.1": np.zeros(8, np.float16)}, "F32"),
        ({"direction.1": np.zeros((2, 4), np.float32)}, "1-D"),
        (
            {"direction.1": np.zeros(8, np.float32), "direction.2": np.zeros(4, np.float32)},
            "entries",
        ),
        ({"bias.1": np.zeros(8, np.float32)}, r"direction\.N"),
    ],
)
def test_reader_rejects_what_llama_cpp_rejects(tmp_path, tensors, message):
    path = _raw_gguf(tmp_path / "bad.gguf", tensors)
    with pytest.raises(ValueError, match=message):
        read_control_vector(path)


def test_exported_gguf_steers_like_the_intervention(make_model, tokens, tmp_path):
    model = make_model("bias", hooks=("blocks.1.hook_resid_post", "blocks.2.hook_resid_post"))
    path = save_gguf(vectors_from_model(model), tmp_path / "cv.gguf")
    with torch.no_grad():
        expected = model(tokens)
        with steer(model.model, path) as hooked:
            torch.testing.assert_close(hooked(tokens), expected, rtol=1e-5, atol=1e-5)
