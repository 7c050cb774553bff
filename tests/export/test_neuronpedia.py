"""Neuronpedia vector-upload bodies and feature-steering lists."""

from __future__ import annotations

import pytest
import torch

from isaerft.export import neuronpedia_payload, vectors_from_model
from isaerft.export.neuronpedia import split_neuronpedia_id

HOOK = "blocks.1.hook_resid_post"


def test_payload_uploads_at_resid_pre_and_features_sum_to_vector(make_model):
    model = make_model("bias", architecture="topk", rescale_acts_by_decoder_norm=True)
    sae = model.sites[0].sae
    sae.cfg.metadata.neuronpedia_id = "tiny-model/1-res-tiny"
    vectors = vectors_from_model(model, source_run="runs/r1")
    payload = neuronpedia_payload(vectors, label="poison", default_strength=4.0)

    (upload,) = payload["vectors"]
    assert upload == {
        "modelId": "tiny-model",
        "layerNumber": 2,  # blocks.1.hook_resid_post is blocks.2.hook_resid_pre
        "hookType": "hook_resid_pre",
        "vector": pytest.approx(vectors[HOOK].vector.tolist()),
        "vectorLabel": "poison",
        "vectorDefaultSteerStrength": 4.0,
    }
    features = payload["features"]
    assert {f["modelId"] for f in features} == {"tiny-model"}
    assert {f["layer"] for f in features} == {"1-res-tiny"}
    strengths = [abs(f["strength"]) for f in features]
    assert strengths == sorted(strengths, reverse=True)
    # Neuronpedia adds strength * W_dec[index] per feature: the list sums to the vector.
    total = sum(f["strength"] * sae.W_dec[f["index"]].detach() for f in features)
    torch.testing.assert_close(total, vectors[HOOK].vector, rtol=1e-4, atol=1e-5)
    assert payload["steer"]["normalize_steering"] is False


def test_max_features_keeps_the_largest(make_model):
    model = make_model("bias")
    vectors = vectors_from_model(model)
    payload = neuronpedia_payload(vectors, neuronpedia_id="m/1-res", max_features=5)
    coefficients = vectors[HOOK].coefficients
    assert len(payload["features"]) == 5
    top = coefficients.abs().topk(5).indices.tolist()
    assert [f["index"] for f in payload["features"]] == top


def test_missing_neuronpedia_id_is_refused_with_the_fix(make_model):
    vectors = vectors_from_model(make_model("bias"))
    with pytest.raises(ValueError, match="--neuronpedia-id"):
        neuronpedia_payload(vectors)


def test_several_sites_need_one_id_each(make_model):
    hooks = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    vectors = vectors_from_model(make_model("bias", hooks=hooks))
    with pytest.raises(ValueError, match="HOOK=ID"):
        neuronpedia_payload(vectors, neuronpedia_id="m/0-res")
    payload = neuronpedia_payload(
        vectors, neuronpedia_id={h: f"m/{i}-res" for i, h in enumerate(hooks)}
    )
    assert [u["layerNumber"] for u in payload["vectors"]] == [1, 2]
    assert {f["layer"] for f in payload["features"]} == {"0-res", "1-res"}


def test_last_block_output_cannot_be_uploaded(make_model):
    vectors = vectors_from_model(make_model("bias", hooks=("blocks.2.hook_resid_post",)))
    with pytest.raises(ValueError, match="last block"):
        neuronpedia_payload(vectors, neuronpedia_id="m/2-res")


def test_strength_range_and_id_format(make_model):
    vectors = vectors_from_model(make_model("bias"))
    with pytest.raises(ValueError, match=r"\[-100.0, 100.0\]"):
        neuronpedia_payload(vectors, neuronpedia_id="m/1-res", default_strength=150.0)
    with pytest.raises(ValueError, match="MODEL_ID/SOURCE"):
        split_neuronpedia_id("no-slash")
    assert split_neuronpedia_id("gemma-2-2b/12-gemmascope-res-16k") == (
        "gemma-2-2b",
        "12-gemmascope-res-16k",
    )


def test_run_time_normalised_sites_get_no_features(make_model, tokens):
    model = make_model("bias", normalize_activations="layer_norm")
    payload = neuronpedia_payload(vectors_from_model(model, tokens), neuronpedia_id="m/1-res")
    assert payload["features"] == [] and "run-time" in payload["notes"][0]
    assert len(payload["vectors"]) == 1
