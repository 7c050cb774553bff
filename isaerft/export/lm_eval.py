"""The steering file of lm-evaluation-harness' ``steered`` model, without depending on lm-eval.

``lm_eval --model steered --model_args pretrained=HF_CHECKPOINT,steer_path=FILE.pt`` (module
``lm_eval/models/hf_steered.py``, checked against lm-eval 0.4.13) reads ``FILE.pt`` with
``torch.load`` (the path must end in ``.pt`` or ``.pth``) into::

    {hookpoint: {"steering_vector": Tensor[d_model], "steering_coefficient": float,
                 "action": "add" | "clamp", "bias": Tensor | None, "head_index": int | None}}

For each hookpoint it registers a forward hook on the module of the Hugging Face model's
``base_model`` of that name (from ``base_model.named_modules()``, so ``h.3`` for GPT-2 and
``layers.3`` for Llama, Gemma, Qwen, Mistral and GPT-NeoX, not ``transformer.h.3`` or
``model.layers.3``; a name that resolves to no module is an error), and on every forward pass
(log-likelihood scoring and generation alike) replaces the module's output, or the first
element when the output is a tuple, by ``output + steering_coefficient * steering_vector`` at
every position (``action="add"``; ``bias`` must be ``None`` there). ``"clamp"`` instead sets the
activation's component along the unit vector to ``steering_coefficient`` (after subtracting
``bias``), which is not what an isaerft edit does and is never written here.

A decoder layer's output is the residual stream after that block, TransformerLens'
``blocks.N.hook_resid_post``, so a vector at ``blocks.N.hook_resid_post`` (or
``blocks.{N+1}.hook_resid_pre``) is written as ``"add"`` at ``{layers}.N`` with coefficient 1.
Sites that land on the same layer are summed. The file holds only tensors, floats, strings and
``None``, so it also loads with ``torch.load(..., weights_only=True)``, which is how
:func:`read_lm_eval` reads it back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from isaerft._io import atomic_write
from isaerft.export.layers import lm_eval_layer
from isaerft.export.vectors import SteeringVectors

#: File suffixes lm-eval's ``steered`` model accepts for a ``torch.load`` file.
LM_EVAL_SUFFIXES = (".pt", ".pth")

#: Hugging Face architecture (``config.architectures[0]``, TransformerLens'
#: ``cfg.original_architecture``) -> the name of its decoder-layer list inside
#: ``model.base_model`` (what lm-eval's hookpoints are relative to).
DECODER_LAYERS: dict[str, str] = {
    "GPT2LMHeadModel": "h",
    "GPTNeoForCausalLM": "h",
    "GPTJForCausalLM": "h",
    "BloomForCausalLM": "h",
    "GPTNeoXForCausalLM": "layers",
    "LlamaForCausalLM": "layers",
    "MistralForCausalLM": "layers",
    "MixtralForCausalLM": "layers",
    "Qwen2ForCausalLM": "layers",
    "Qwen3ForCausalLM": "layers",
    "GemmaForCausalLM": "layers",
    "Gemma2ForCausalLM": "layers",
    "Gemma3ForCausalLM": "layers",
    "PhiForCausalLM": "layers",
    "Phi3ForCausalLM": "layers",
    "OlmoForCausalLM": "layers",
    "Olmo2ForCausalLM": "layers",
    "StableLmForCausalLM": "layers",
    "OPTForCausalLM": "decoder.layers",
}

ENTRY_KEYS = ("steering_vector", "steering_coefficient", "action", "bias", "head_index")

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_HOOKPOINT = re.compile(r"^(?:[A-Za-z_]\w*\.)+(\d+)$")


def hf_architecture(model: Any) -> str | None:
    """The Hugging Face architecture of a TransformerLens model's checkpoint, if known.

    A ``TransformerBridge`` wraps the Hugging Face model itself (``original_model``), whose
    class is the architecture. A ``HookedTransformer`` records it as
    ``cfg.original_architecture`` for hub models and Hugging Face folders. A model built in
    TransformerLens itself (the organism) records none; if it is GPT-2 shaped, its Hugging Face
    checkpoint is the ``GPT2LMHeadModel`` that :func:`isaerft.organism.hf.save_hf_model` writes.
    ``None`` otherwise.
    """
    original = getattr(model, "original_model", None)
    if isinstance(original, torch.nn.Module):
        return type(original).__name__
    recorded = getattr(model.cfg, "original_architecture", None)
    if recorded:
        return str(recorded)
    if not isinstance(model, HookedTransformer):
        return None
    from isaerft.organism.hf import gpt2_config

    try:
        gpt2_config(model)
    except ValueError:
        return None
    return "GPT2LMHeadModel"


def decoder_layers_module(architecture: str | None, hf_layers: str | None = None) -> str:
    """The decoder-layer list lm-eval's hookpoints are named under (``"h"``, ``"layers"``).

    Args:
        architecture: the Hugging Face architecture (see :func:`hf_architecture`).
        hf_layers: an explicit name (``--hf-layers``), used as is for architectures not in
            :data:`DECODER_LAYERS`.

    Raises:
        ValueError: when neither names a known module list.
    """
    if hf_layers is not None:
        if not _MODULE.match(hf_layers):
            raise ValueError(
                f"--hf-layers {hf_layers!r} is not a module path; give the decoder-layer list "
                "under model.base_model, e.g. 'h' (GPT-2) or 'layers' (Llama)"
            )
        return hf_layers
    fix = (
        "pass --hf-layers MODULE (the decoder-layer list under model.base_model, e.g. 'layers'), "
        "or export --format safetensors"
    )
    if architecture is None:
        raise ValueError(
            "the base model records no Hugging Face architecture (cfg.original_architecture) and "
            f"is not GPT-2 shaped, so lm-eval's module names for it are unknown; {fix}"
        )
    if architecture not in DECODER_LAYERS:
        raise ValueError(
            f"lm-eval's module names for the Hugging Face architecture {architecture!r} are "
            f"unknown to isaerft (known: {', '.join(sorted(DECODER_LAYERS))}); {fix}"
        )
    return DECODER_LAYERS[architecture]


def lm_eval_hookpoint(hook_name: str, layers: str, n_layers: int) -> str:
    """lm-eval's hookpoint for a vector at TransformerLens ``hook_name`` (``"h.3"``).

    Raises:
        ValueError: for hooks that are not the output of a decoder layer (see
            :func:`isaerft.export.layers.lm_eval_layer`).
    """
    return f"{layers}.{lm_eval_layer(hook_name, n_layers)}"


def steer_config(vectors: SteeringVectors, layers: str) -> dict[str, dict[str, Any]]:
    """The ``{hookpoint: {...}}`` dict lm-eval loads (module docstring), sites summed per layer."""
    summed: dict[str, torch.Tensor] = {}
    for site in vectors.sites:
        point = lm_eval_hookpoint(site.hook_name, layers, vectors.n_layers)
        vector = site.vector.float()
        summed[point] = vector if point not in summed else summed[point] + vector
    return {
        point: {
            "steering_vector": vector.contiguous().clone(),
            "steering_coefficient": 1.0,
            "action": "add",
            "bias": None,
            "head_index": None,
        }
        for point, vector in summed.items()
    }


def save_lm_eval(
    vectors: SteeringVectors,
    path: str | Path,
    *,
    architecture: str | None = None,
    hf_layers: str | None = None,
) -> Path:
    """Write lm-eval's ``steered``-model file, atomically; refusals raise before writing.

    Args:
        vectors: the exported vectors.
        path: the file, ending in ``.pt`` or ``.pth`` (lm-eval decides by the suffix).
        architecture: the Hugging Face architecture of the checkpoint lm-eval will load (see
            :func:`hf_architecture`); it fixes the hookpoint names.
        hf_layers: the decoder-layer list's name instead, for architectures isaerft does not know.
    """
    path = Path(path)
    if path.suffix not in LM_EVAL_SUFFIXES:
        raise ValueError(
            f"lm-eval reads steering files by suffix and {path.name!r} ends in neither .pt nor "
            f".pth; name it {path.with_suffix('.pt').name}"
        )
    config = steer_config(vectors, decoder_layers_module(architecture, hf_layers))
    return atomic_write(path, lambda tmp: torch.save(config, tmp))


def read_lm_eval(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``{hookpoint: {...}}`` dict of an lm-eval steering file, loaded without pickle code
    (``torch.load(weights_only=True)``)."""
    config = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(config, dict) or not all(
        isinstance(v, dict) and "steering_vector" in v for v in config.values()
    ):
        raise ValueError(f"{path} is not an lm-eval steering file ({{hookpoint: {{...}}}})")
    return config


def load_lm_eval_vectors(path: str | Path) -> dict[str, torch.Tensor]:
    """``{blocks.N.hook_resid_post: coefficient * vector}`` from an lm-eval steering file.

    Raises:
        ValueError: for entries that are not a plain ``"add"`` at a decoder layer's output
            (``"clamp"``, a ``bias`` or a ``head_index`` have no TransformerLens equivalent here).
    """
    out: dict[str, torch.Tensor] = {}
    for point, entry in read_lm_eval(path).items():
        match = _HOOKPOINT.match(str(point))
        action = entry.get("action")
        if match is None or action != "add" or entry.get("bias") is not None:
            raise ValueError(
                f"{path}: hookpoint {point!r} (action={action!r}) is not an 'add' at a decoder "
                "layer's output; only files written by `isaerft export --format lm-eval` can be "
                "applied here"
            )
        if entry.get("head_index") is not None:
            raise ValueError(
                f"{path}: hookpoint {point!r} steers one attention head; not supported"
            )
        coefficient = float(entry.get("steering_coefficient", 1.0))
        vector = entry["steering_vector"].detach().flatten().float() * coefficient
        hook = f"blocks.{int(match.group(1))}.hook_resid_post"
        out[hook] = vector if hook not in out else out[hook] + vector
    return out
