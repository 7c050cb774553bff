"""The table of vector file formats: name -> check, write, read. The CLI and
:func:`isaerft.export.load_vectors` both go through it, so a new format is one
:class:`VectorFormat` subclass plus one :func:`register_format` call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from isaerft._io import write_json
from isaerft.export.layers import llama_cpp_layer, neuronpedia_layer, steering_vectors_layer
from isaerft.export.llama_cpp import read_control_vector, save_gguf
from isaerft.export.lm_eval import (
    LM_EVAL_SUFFIXES,
    decoder_layers_module,
    hf_architecture,
    lm_eval_hookpoint,
    load_lm_eval_vectors,
    save_lm_eval,
)
from isaerft.export.neuronpedia import neuronpedia_payload
from isaerft.export.steering_vectors import (
    STEERING_VECTORS_FORMAT,
    load_layer_activations,
    save_steering_vectors,
)
from isaerft.export.vectors import FORMAT as NATIVE_FORMAT
from isaerft.export.vectors import SteeringVectors, read_metadata

if TYPE_CHECKING:
    from isaerft.model import ISaeRFTModel

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class WriteOptions:
    """The format-specific choices of ``isaerft export``; each format reads only its own.

    Attributes:
        model_hint: GGUF ``controlvector.model_hint`` (default: the model name).
        neuronpedia_id: Neuronpedia id(s) of the SAE(s) when their metadata lacks one: one
            string for a single site, else ``{hook_name: id}``.
        label: Neuronpedia ``vectorLabel``.
        strength: Neuronpedia default steering strength.
        max_features: Neuronpedia: features kept per site.
        hf_architecture: lm-eval: the Hugging Face architecture of the checkpoint lm-eval
            loads (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ...), which fixes the module
            names; the CLI fills it from the base model (see
            :func:`isaerft.export.lm_eval.hf_architecture`).
        hf_layers: lm-eval: the decoder-layer list under ``model.base_model`` (``h``,
            ``layers``) for an architecture isaerft does not know; overrides ``hf_architecture``.
    """

    model_hint: str | None = None
    neuronpedia_id: str | Mapping[str, str] | None = None
    label: str | None = None
    strength: float = 1.0
    max_features: int | None = None
    hf_architecture: str | None = None
    hf_layers: str | None = None


class VectorFormat(ABC):
    """One file format for exported vectors."""

    #: the ``--format`` name
    name: str = ""

    def check(self, model: ISaeRFTModel, options: WriteOptions) -> None:
        """Raise ``ValueError`` for a site this format cannot take, before any data averaging."""
        return None  # a format that takes every site has nothing to check

    @abstractmethod
    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        """Write ``vectors`` to ``path`` atomically; refused sites raise before anything is written."""

    @abstractmethod
    def recognises(self, path: Path) -> bool:
        """Whether the existing file at ``path`` is in this format."""

    @abstractmethod
    def read(self, path: Path) -> dict[str, torch.Tensor]:
        """``{hook_name: vector}`` from a file in this format (what :func:`steer` adds)."""

    def usage(self, vectors: SteeringVectors, path: Path) -> str | None:
        """A line telling the user how to use the written file in its tool, if there is one."""
        return None


class NativeFormat(VectorFormat):
    """isaerft's own safetensors file: every site's vector and per-latent coefficients."""

    name = "safetensors"

    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        return vectors.save(path)

    def recognises(self, path: Path) -> bool:
        return _safetensors_format(path) == NATIVE_FORMAT

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return SteeringVectors.load(path).as_dict()


class GGUFFormat(VectorFormat):
    """llama.cpp control vectors (see :mod:`isaerft.export.llama_cpp`)."""

    name = "gguf"

    def check(self, model: ISaeRFTModel, options: WriteOptions) -> None:
        for hook in model.hook_names:
            llama_cpp_layer(hook, model.model.cfg.n_layers)

    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        return save_gguf(vectors, path, model_hint=options.model_hint)

    def recognises(self, path: Path) -> bool:
        with path.open("rb") as handle:
            return path.suffix == ".gguf" or handle.read(4) == GGUF_MAGIC

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return {f"blocks.{n}.hook_resid_post": v for n, v in read_control_vector(path).items()}

    def usage(self, vectors: SteeringVectors, path: Path) -> str:
        layers = [llama_cpp_layer(h, vectors.n_layers) for h in vectors.hook_names]
        return (
            f"use: llama-cli -m MODEL.gguf --control-vector-scaled {path}:1.0 "
            f"--control-vector-layer-range {min(layers)} {max(layers)}"
        )


class NeuronpediaFormat(VectorFormat):
    """Upload bodies and a feature-steering list (see :mod:`isaerft.export.neuronpedia`)."""

    name = "neuronpedia"

    def check(self, model: ISaeRFTModel, options: WriteOptions) -> None:
        ids = options.neuronpedia_id
        for hook in model.hook_names:
            neuronpedia_layer(hook, model.model.cfg.n_layers)
            known = ids if isinstance(ids, str) else (ids or {}).get(hook)
            if not known and not model.site(hook).sae.cfg.metadata.get("neuronpedia_id"):
                raise ValueError(
                    f"the SAE at {hook!r} has no cfg.metadata.neuronpedia_id; pass "
                    "--neuronpedia-id MODEL_ID/SOURCE (HOOK=MODEL_ID/SOURCE for several sites)"
                )

    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        payload = neuronpedia_payload(
            vectors,
            neuronpedia_id=options.neuronpedia_id,
            label=options.label,
            default_strength=options.strength,
            max_features=options.max_features,
        )
        return write_json(path, payload)

    def recognises(self, path: Path) -> bool:
        return path.suffix == ".json"

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        raise ValueError(
            f"{path} looks like a Neuronpedia payload, which is uploaded, not applied locally; "
            "export --format safetensors to steer with it here"
        )


class SteeringVectorsFormat(VectorFormat):
    """The ``steering-vectors`` library's ``{layer: tensor}`` file."""

    name = "steering-vectors"

    def check(self, model: ISaeRFTModel, options: WriteOptions) -> None:
        for hook in model.hook_names:
            steering_vectors_layer(hook)

    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        return save_steering_vectors(vectors, path)

    def recognises(self, path: Path) -> bool:
        return _safetensors_format(path) == STEERING_VECTORS_FORMAT

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return {f"blocks.{n}.hook_resid_post": v for n, v in load_layer_activations(path).items()}


class LmEvalFormat(VectorFormat):
    """lm-evaluation-harness' ``steered`` model file (see :mod:`isaerft.export.lm_eval`)."""

    name = "lm-eval"

    def check(self, model: ISaeRFTModel, options: WriteOptions) -> None:
        architecture = options.hf_architecture or hf_architecture(model.model)
        layers = decoder_layers_module(architecture, options.hf_layers)
        for hook in model.hook_names:
            lm_eval_hookpoint(hook, layers, model.model.cfg.n_layers)

    def write(self, vectors: SteeringVectors, path: Path, options: WriteOptions) -> Path:
        if options.hf_architecture is None and options.hf_layers is None:
            raise ValueError(
                "the lm-eval format names Hugging Face modules: pass WriteOptions(hf_architecture="
                "hf_architecture(model.model)) or hf_layers= (the CLI fills it from the base model)"
            )
        return save_lm_eval(
            vectors, path, architecture=options.hf_architecture, hf_layers=options.hf_layers
        )

    def recognises(self, path: Path) -> bool:
        return path.suffix in LM_EVAL_SUFFIXES

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return load_lm_eval_vectors(path)

    def usage(self, vectors: SteeringVectors, path: Path) -> str:
        return (
            "use: lm_eval --model steered --model_args "
            f"pretrained=HF_CHECKPOINT,steer_path={path} --tasks TASKS "
            "(HF_CHECKPOINT: the base model as a Hugging Face checkpoint)"
        )


def _safetensors_format(path: Path) -> str | None:
    """The ``format`` metadata of a safetensors file; ``None`` for anything else."""
    try:
        return read_metadata(path).get("format")
    except Exception:  # not a safetensors file at all: some other format's
        return None


_FORMATS: dict[str, VectorFormat] = {}


def register_format(fmt: VectorFormat) -> VectorFormat:
    """Make ``fmt`` available as ``isaerft export --format NAME`` and to :func:`load_vectors`."""
    if not fmt.name:
        raise ValueError(f"{type(fmt).__name__} needs a non-empty name")
    if fmt.name in _FORMATS and type(_FORMATS[fmt.name]) is not type(fmt):
        raise ValueError(f"vector format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def vector_formats() -> dict[str, VectorFormat]:
    """The registered formats, name -> format, in registration order."""
    return dict(_FORMATS)


def get_format(name: str) -> VectorFormat:
    if name not in _FORMATS:
        raise ValueError(f"unknown vector format {name!r}; use one of {list(_FORMATS)}")
    return _FORMATS[name]


def format_of_file(path: str | Path) -> VectorFormat:
    """The registered format that recognises the file at ``path``.

    A file no format recognises is read as a native file, whose reader says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} not found")
    for fmt in _FORMATS.values():
        if fmt.recognises(path):
            return fmt
    return _FORMATS[NativeFormat.name]


for _format in (
    NativeFormat(),
    GGUFFormat(),
    NeuronpediaFormat(),
    SteeringVectorsFormat(),
    LmEvalFormat(),
):
    register_format(_format)
