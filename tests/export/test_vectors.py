"""``SteeringVectors``: validation, the sparse coefficient list, the safetensors file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from isaerft.export import SiteVector, SteeringVectors, vectors_from_model
from isaerft.export.vectors import read_metadata

HOOK = "blocks.1.hook_resid_post"


def test_save_load_round_trip_with_metadata(make_model, tokens, tmp_path):
    model = make_model("scale")
    vectors = vectors_from_model(model, tokens, eval_data=tokens, source_run="runs/r")
    path = vectors.save(tmp_path / "v.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert set(handle.keys()) == {f"vector/{HOOK}", f"latent_coefficients/{HOOK}"}
    meta = read_metadata(path)
    assert meta["format"] == "isaerft.steering_vectors"
    assert meta["model_name"] == vectors.model_name and meta["d_model"] == "32"
    (site,) = json.loads(meta["sites"])
    assert site["hook_name"] == HOOK and site["block"] == 1 and site["kind"] == "data_mean"
    assert site["sae_fingerprint"] == vectors[HOOK].sae_fingerprint
    assert meta["source_run"] == "runs/r"

    loaded = SteeringVectors.load(path)
    assert loaded.metadata() == vectors.metadata()
    assert torch.equal(loaded[HOOK].vector, vectors[HOOK].vector)
    assert torch.equal(loaded[HOOK].coefficients, vectors[HOOK].coefficients)


def test_top_latents_is_sparse_and_sorted():
    coefficients = torch.tensor([0.0, -3.0, 0.5, 2.0, 0.0, 0.01])
    site = SiteVector(
        hook_name=HOOK, vector=torch.zeros(4), kind="exact", coefficients=coefficients
    )
    assert site.top_latents() == [(1, -3.0), (3, 2.0), (2, 0.5), (5, pytest.approx(0.01))]
    assert site.top_latents(k=2) == [(1, -3.0), (3, 2.0)]
    assert [i for i, _ in site.top_latents(min_abs=0.1)] == [1, 3, 2]
    with pytest.raises(ValueError, match="no per-latent coefficients"):
        SiteVector(hook_name=HOOK, vector=torch.zeros(4), kind="data_mean").top_latents()


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match="kind"):
        SiteVector(hook_name=HOOK, vector=torch.zeros(4), kind="mean")
    with pytest.raises(ValueError, match="NaN"):
        SiteVector(hook_name=HOOK, vector=torch.tensor([1.0, float("nan")]), kind="exact")
    with pytest.raises(ValueError, match="1-D"):
        SiteVector(hook_name=HOOK, vector=torch.zeros(2, 2), kind="exact")
    site = SiteVector(hook_name=HOOK, vector=torch.zeros(4), kind="exact")
    with pytest.raises(ValueError, match="more than once"):
        SteeringVectors(sites=[site, site], model_name="m", d_model=4, n_layers=2)
    with pytest.raises(ValueError, match="at least one"):
        SteeringVectors(sites=[], model_name="m", d_model=4, n_layers=2)


def test_loading_a_foreign_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not an isaerft steering-vector file"):
        SteeringVectors.load(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        SteeringVectors.load(tmp_path / "missing.safetensors")
