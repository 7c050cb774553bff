"""Hook-name-to-layer mapping for llama.cpp, steering-vectors and Neuronpedia."""

from __future__ import annotations

import pytest

from isaerft.export.layers import (
    block_index,
    llama_cpp_layer,
    neuronpedia_layer,
    residual_block_output,
    steering_vectors_layer,
)

N_LAYERS = 26


@pytest.mark.parametrize(
    ("hook", "block"),
    [
        ("blocks.12.hook_resid_post", 12),
        ("blocks.12.hook_resid_pre", 11),
        ("blocks.0.hook_resid_post", 0),
        ("blocks.1.hook_resid_pre", 0),
        ("blocks.0.hook_resid_pre", -1),
    ],
)
def test_residual_block_output(hook, block):
    assert residual_block_output(hook) == block


@pytest.mark.parametrize(
    "hook",
    [
        "blocks.3.hook_resid_mid",
        "blocks.3.attn.hook_z",
        "blocks.3.hook_mlp_out",
        "ln_final.hook_normalized",
        "hook_embed",
        "blocks.3.hook_resid_post_extra",
    ],
)
def test_non_residual_hooks_are_refused_everywhere(hook):
    for mapping in (
        residual_block_output,
        steering_vectors_layer,
        lambda h: llama_cpp_layer(h, N_LAYERS),
        lambda h: neuronpedia_layer(h, N_LAYERS),
    ):
        with pytest.raises(ValueError, match="residual"):
            mapping(hook)


@pytest.mark.parametrize(
    ("hook", "direction"),
    [
        ("blocks.12.hook_resid_post", 12),
        ("blocks.12.hook_resid_pre", 11),
        ("blocks.1.hook_resid_post", 1),
        ("blocks.2.hook_resid_pre", 1),
        ("blocks.25.hook_resid_post", 25),
    ],
)
def test_llama_cpp_direction_is_the_block_output(hook, direction):
    assert llama_cpp_layer(hook, N_LAYERS) == direction


@pytest.mark.parametrize(
    "hook", ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre"]
)
def test_llama_cpp_refuses_what_would_be_direction_0(hook):
    with pytest.raises(ValueError, match=r"direction\.0"):
        llama_cpp_layer(hook, N_LAYERS)


def test_llama_cpp_refuses_blocks_the_model_lacks():
    with pytest.raises(ValueError, match="last block"):
        llama_cpp_layer("blocks.26.hook_resid_post", N_LAYERS)


@pytest.mark.parametrize(
    ("hook", "layer"),
    [
        ("blocks.0.hook_resid_post", 0),
        ("blocks.1.hook_resid_pre", 0),
        ("blocks.7.hook_resid_post", 7),
        ("blocks.7.hook_resid_pre", 6),
    ],
)
def test_steering_vectors_layer(hook, layer):
    assert steering_vectors_layer(hook) == layer


def test_steering_vectors_refuses_embeddings():
    with pytest.raises(ValueError, match="embeddings"):
        steering_vectors_layer("blocks.0.hook_resid_pre")


@pytest.mark.parametrize(
    ("hook", "layer"),
    [
        ("blocks.12.hook_resid_post", 13),
        ("blocks.12.hook_resid_pre", 12),
        ("blocks.0.hook_resid_pre", 0),
        ("blocks.24.hook_resid_post", 25),
    ],
)
def test_neuronpedia_layer_is_resid_pre(hook, layer):
    assert neuronpedia_layer(hook, N_LAYERS) == layer


def test_neuronpedia_refuses_last_block_output():
    with pytest.raises(ValueError, match="last block"):
        neuronpedia_layer("blocks.25.hook_resid_post", N_LAYERS)


def test_block_index():
    assert block_index("blocks.7.attn.hook_z") == 7
    assert block_index("blocks.12.hook_resid_post") == 12
    assert block_index("ln_final.hook_normalized") is None
