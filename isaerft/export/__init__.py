"""Export trained per-latent edits as steering vectors, write them for other tools, apply them back.

* :func:`vectors_from_model` turns each site's edit into a residual vector: exact for bias
  edits, averaged over a dataset for input-dependent (scale, MLP) edits.
* :meth:`SteeringVectors.save` (native safetensors), :func:`save_gguf` (llama.cpp control
  vector), :func:`save_lm_eval` (lm-evaluation-harness ``steered`` model),
  :func:`neuronpedia_payload` and :func:`save_steering_vectors` (the ``steering-vectors``
  library) write them out.
* :func:`steer` adds them to a TransformerLens model inside a ``with`` block.
"""

from isaerft.export.compute import vectors_from_model
from isaerft.export.data import read_texts, split_heldout
from isaerft.export.gap import approximation_gap
from isaerft.export.generate import compare_generations
from isaerft.export.layers import (
    llama_cpp_layer,
    neuronpedia_layer,
    residual_block_output,
    steering_vectors_layer,
)
from isaerft.export.llama_cpp import read_control_vector, save_gguf
from isaerft.export.lm_eval import save_lm_eval
from isaerft.export.neuronpedia import neuronpedia_payload
from isaerft.export.runs import load_isaerft_model
from isaerft.export.steering import load_vectors, steer
from isaerft.export.steering_vectors import layer_activations, save_steering_vectors
from isaerft.export.vectors import SiteVector, SteeringVectors

__all__ = [
    "SiteVector",
    "SteeringVectors",
    "approximation_gap",
    "compare_generations",
    "layer_activations",
    "llama_cpp_layer",
    "load_isaerft_model",
    "load_vectors",
    "neuronpedia_layer",
    "neuronpedia_payload",
    "read_control_vector",
    "read_texts",
    "residual_block_output",
    "save_gguf",
    "save_lm_eval",
    "save_steering_vectors",
    "split_heldout",
    "steer",
    "steering_vectors_layer",
    "vectors_from_model",
]
