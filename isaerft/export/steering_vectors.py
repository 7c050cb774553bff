"""The ``{layer: tensor}`` shape of the ``steering-vectors`` library, without depending on it.

That library's ``SteeringVector(layer_activations={layer: tensor}, layer_type="decoder_block")``
adds ``multiplier * layer_activations[L]`` to the output of decoder block ``L`` at every
position, i.e. to TransformerLens' ``blocks.L.hook_resid_post``. The file is safetensors with
one 1-D float32 tensor per layer, keyed by the layer number as a string; load it with::

    from safetensors import safe_open
    from steering_vectors import SteeringVector

    with safe_open("vectors.safetensors", framework="pt") as f:
        layers = {int(k): f.get_tensor(k) for k in f.keys()}
        layer_type = f.metadata()["layer_type"]
    vector = SteeringVector(layer_activations=layers, layer_type=layer_type)
    with vector.apply(hf_model, multiplier=1.0):
        ...
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from isaerft._io import read_safetensors, write_safetensors
from isaerft.export.layers import steering_vectors_layer
from isaerft.export.vectors import SteeringVectors, read_metadata

STEERING_VECTORS_FORMAT = "steering-vectors"
LAYER_TYPE = "decoder_block"


def layer_activations(vectors: SteeringVectors) -> dict[int, torch.Tensor]:
    """``{decoder block: vector}``, summing sites that land on the same block output.

    Raises:
        ValueError: for non-residual hooks and the embeddings (see
            :func:`isaerft.export.layers.steering_vectors_layer`).
    """
    layers: dict[int, torch.Tensor] = {}
    for site in vectors.sites:
        layer = steering_vectors_layer(site.hook_name)
        layers[layer] = site.vector if layer not in layers else layers[layer] + site.vector
    return dict(sorted(layers.items()))


def save_steering_vectors(vectors: SteeringVectors, path: str | Path) -> Path:
    """Write the ``{layer: tensor}`` file described in the module docstring, atomically."""
    layers = layer_activations(vectors)
    metadata = {
        "format": STEERING_VECTORS_FORMAT,
        "layer_type": LAYER_TYPE,
        "model_name": vectors.model_name,
        "source_run": vectors.source_run,
        "hook_names": json.dumps(vectors.hook_names),
    }
    return write_safetensors(path, {str(k): v for k, v in layers.items()}, metadata=metadata)


def load_layer_activations(path: str | Path) -> dict[int, torch.Tensor]:
    """Read a file written by :func:`save_steering_vectors` into ``{layer: vector}``."""
    meta = read_metadata(path)
    if meta.get("format") != STEERING_VECTORS_FORMAT or meta.get("layer_type") != LAYER_TYPE:
        raise ValueError(f"{path} is not a steering-vectors file written by isaerft export")
    return {int(k): v for k, v in sorted(read_safetensors(path).items(), key=lambda kv: int(kv[0]))}
