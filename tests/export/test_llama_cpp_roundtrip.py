"""llama.cpp itself, steered by an exported control vector, against isaerft's own ``steer``.

The round trip (``python -m benchmarks.interop_llama_cpp``, ``make interop``) needs llama-cpp-python,
which is built from source and so is opt-in: without it the test skips and says how to get it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from isaerft.export.llama_cpp import control_vector_data, save_gguf
from isaerft.export.vectors import SiteVector, SteeringVectors

BAR = 1e-3  # nats per token


def test_control_vector_data_is_llama_cpps_buffer(tmp_path: Path) -> None:
    a, c = torch.randn(8), torch.randn(8)
    sites = [
        SiteVector(hook_name="blocks.1.hook_resid_post", vector=a, kind="exact"),
        SiteVector(hook_name="blocks.3.hook_resid_post", vector=c, kind="exact"),
    ]
    vectors = SteeringVectors(sites=sites, model_name="m", d_model=8, n_layers=4)
    data, n_embd = control_vector_data(save_gguf(vectors, tmp_path / "cv.gguf"), strength=2.0)
    # common_control_vector_load_one: direction.N at n_embd * (N - 1), zeros between.
    assert n_embd == 8 and data.dtype == np.float32 and data.shape == (24,)
    np.testing.assert_allclose(data[:8], 2 * a.numpy(), rtol=1e-6)
    assert not data[8:16].any()
    np.testing.assert_allclose(data[16:], 2 * c.numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def interop() -> tuple[ModuleType, Path]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (opt-in, built from source: `make interop`)")
    from benchmarks import interop_llama_cpp

    source = interop_llama_cpp.llama_cpp_source()
    if source is None:
        pytest.skip(
            "llama.cpp's convert_hf_to_gguf.py not found (`make interop` unpacks it into .venv; "
            f"or set ${interop_llama_cpp.SOURCE_ENV} to a llama.cpp checkout)"
        )
    return interop_llama_cpp, source


@pytest.mark.slow
def test_llama_cpp_steers_like_isaerft(interop: tuple[ModuleType, Path], tmp_path: Path) -> None:
    module, source = interop
    result = module.round_trip(tmp_path, source=source, steps=20, n_train=96, n_eval=12)
    assert result["llama_cpp_version"].startswith("llama-cpp-python ")
    assert result["base_kl"] <= BAR
    for kind in ("bias", "scale"):
        run = result["runs"][kind]
        assert run["n_tokens"] > 0
        assert run["kl"] <= BAR, kind  # the same vector, added by llama.cpp at the same block
        assert run["unsteered_kl"] > 100 * run["kl"], kind  # ... and it does move the model
    # A bias edit is exactly its vector, so llama.cpp also reproduces the trained intervention.
    bias = result["runs"]["bias"]
    assert bias["intervention_kl"] <= BAR < bias["unsteered_kl"]
