"""Which layer index each steering format uses for a TransformerLens hook.

TransformerLens names the residual stream between blocks twice: ``blocks.N.hook_resid_post``
(the output of block ``N``) is the same tensor as ``blocks.{N+1}.hook_resid_pre`` (the input
of block ``N+1``). Every external format indexes a *block output* or a *block input*, so all
mappings go through :func:`residual_block_output`: the index of the block whose output an
activation is, ``-1`` for the embeddings (``blocks.0.hook_resid_pre``).

=====================  =====================================  ==============================
format                 index written                          ``blocks.N.hook_resid_post``
=====================  =====================================  ==============================
llama.cpp GGUF         ``direction.B``, ``B`` = block output  ``direction.N`` (``N >= 1``)
steering-vectors       ``layer_activations[B]`` (decoder)     ``N``
Neuronpedia vector     ``layerNumber = B + 1``, resid-pre     ``N + 1`` (``N + 1 < n_layers``)
lm-eval ``steered``    hookpoint ``{layers}.B`` (HF module)   ``h.N`` (GPT-2), ``layers.N``
=====================  =====================================  ==============================
"""

from __future__ import annotations

import re

_RESIDUAL = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")

RESIDUAL_HOOK_HELP = (
    "only the residual stream between blocks (blocks.N.hook_resid_post or "
    "blocks.N.hook_resid_pre) can be exported to this format"
)


def block_index(hook_name: str) -> int | None:
    """The block a hook belongs to (``blocks.7.attn.hook_z`` -> 7); ``None`` outside blocks."""
    match = _BLOCK.match(hook_name)
    return int(match.group(1)) if match else None


def residual_block_output(hook_name: str) -> int:
    """Index of the block whose output the activation at ``hook_name`` is.

    ``blocks.N.hook_resid_post`` -> ``N``; ``blocks.N.hook_resid_pre`` -> ``N - 1`` (so the
    embeddings, ``blocks.0.hook_resid_pre``, give ``-1``).

    Raises:
        ValueError: for any other hook (``hook_resid_mid``, attention or MLP hooks, ...):
            a vector there is not a residual-stream vector between two blocks.
    """
    match = _RESIDUAL.match(hook_name)
    if match is None:
        raise ValueError(f"hook {hook_name!r} is not a residual-stream hook; {RESIDUAL_HOOK_HELP}")
    block = int(match.group(1))
    return block if match.group(2) == "post" else block - 1


def llama_cpp_layer(hook_name: str, n_layers: int) -> int:
    """The ``N`` of llama.cpp's ``direction.N`` tensor for a vector at ``hook_name``.

    llama.cpp's loader (``common_control_vector_load_one``) stores ``direction.N`` at offset
    ``n_embd * (N - 1)`` of its buffer and ``llama_adapter_cvec::apply`` fills layer ``il``
    from offset ``n_embd * (il - 1)``, so ``direction.N`` is used at ``il = N``, where
    ``build_cvec(cur, il)`` adds it to the output of block ``il`` (after the FFN residual
    add). Hence ``N`` is the block output index: ``blocks.N.hook_resid_post`` -> ``N``.
    ``make interop`` checks this against llama.cpp itself (GPT-2 graph, ``llama-cpp-python``
    0.3.36): the same file steers llama.cpp and :func:`isaerft.export.steer` alike.

    Raises:
        ValueError: for non-residual hooks, for block 0's output and the embeddings (the
            loader rejects ``direction.0`` and has no slot for them), and for blocks the
            model does not have.
    """
    block = residual_block_output(hook_name)
    if block < 1:
        what = "the embeddings" if block < 0 else "the output of block 0"
        raise ValueError(
            f"hook {hook_name!r} is {what}; llama.cpp control vectors cannot steer it (its loader "
            "rejects direction.0 and has no slot before block 1). Train the intervention at "
            "blocks.N.hook_resid_post with N >= 1, or export to safetensors instead"
        )
    if block >= n_layers:
        raise ValueError(f"hook {hook_name!r} is past the model's last block ({n_layers} blocks)")
    return block


def steering_vectors_layer(hook_name: str) -> int:
    """The layer key for the ``steering-vectors`` library (``layer_type="decoder_block"``).

    That library adds ``layer_activations[L]`` to the output of decoder block ``L``
    (``model.model.layers[L]`` in Hugging Face models), i.e. to ``blocks.L.hook_resid_post``.

    Raises:
        ValueError: for non-residual hooks and the embeddings (no decoder block outputs them).
    """
    block = residual_block_output(hook_name)
    if block < 0:
        raise ValueError(
            f"hook {hook_name!r} is the embeddings, which no decoder block outputs; the "
            "steering-vectors library cannot steer it. Use safetensors instead"
        )
    return block


def neuronpedia_layer(hook_name: str, n_layers: int) -> int:
    """Neuronpedia's ``layerNumber`` for a vector upload at ``hook_name``.

    Neuronpedia's vector upload only accepts ``hookType = "hook_resid_pre"`` and steers
    ``blocks.{layerNumber}.hook_resid_pre``, so a ``hook_resid_post`` vector of block ``N``
    goes to layer ``N + 1`` (the same tensor).

    Raises:
        ValueError: for non-residual hooks and for the last block's output, which has no
            ``hook_resid_pre`` after it.
    """
    layer = residual_block_output(hook_name) + 1
    if layer >= n_layers:
        raise ValueError(
            f"hook {hook_name!r} is the output of the last block; Neuronpedia steers only "
            f"blocks.N.hook_resid_pre (N < {n_layers}), and no block reads it. Use an earlier "
            "hook or export to safetensors instead"
        )
    return layer


def lm_eval_layer(hook_name: str, n_layers: int) -> int:
    """The decoder layer whose output lm-eval's ``steered`` model adds a vector at ``hook_name`` to.

    lm-eval hooks the forward output of a named Hugging Face module; for a decoder layer
    (``h.L`` in GPT-2, ``layers.L`` in Llama-style models) that output is the residual stream
    after block ``L``, i.e. ``blocks.L.hook_resid_post``.

    Raises:
        ValueError: for non-residual hooks, the embeddings (no decoder layer outputs them) and
            blocks the model does not have.
    """
    block = residual_block_output(hook_name)
    if block < 0:
        raise ValueError(
            f"hook {hook_name!r} is the embeddings, which no decoder layer outputs; lm-eval's "
            "steered model cannot steer it. Train at blocks.N.hook_resid_post or export to "
            "safetensors instead"
        )
    if block >= n_layers:
        raise ValueError(f"hook {hook_name!r} is past the model's last block ({n_layers} blocks)")
    return block
