"""``steer``: add exported vectors to a TransformerLens model for the duration of a block."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias

import torch

from isaerft.backends import MODEL_TYPES, LanguageModel
from isaerft.export.formats import format_of_file
from isaerft.export.vectors import SteeringVectors
from isaerft.model import ISaeRFTModel

#: What :func:`steer` accepts: exported vectors, a ``{hook_name: vector}`` mapping, or a file
#: written by ``isaerft export`` (native safetensors, llama.cpp GGUF, steering-vectors).
VectorsLike: TypeAlias = SteeringVectors | Mapping[str, torch.Tensor] | str | Path

_RESIDUAL_WIDTH_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
)


@contextmanager
def steer(
    model: LanguageModel | ISaeRFTModel,
    vectors: VectorsLike,
    multiplier: float = 1.0,
) -> Iterator[LanguageModel]:
    """Within this context, ``multiplier * vector`` is added at each vector's hook, at every
    position, on every forward pass (``generate`` included). The hooks are removed on exit,
    also when the block raises.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge``; for an
            :class:`~isaerft.ISaeRFTModel` the vectors are added to its wrapped base model (so
            its own forward then applies both).
        vectors: see :data:`VectorsLike`.
        multiplier: scales every vector; ``1.0`` reproduces an exact export, negative values
            steer the other way.

    Yields:
        The model the hooks were added to.

    Example:
        >>> with steer(model, "run/vectors.safetensors", multiplier=2.0) as steered:
        ...     steered.generate("User: hi\\nAssistant:", max_new_tokens=20)
    """
    target = model.model if isinstance(model, ISaeRFTModel) else model
    if not isinstance(target, MODEL_TYPES):
        raise TypeError(
            "steer() needs a HookedTransformer, TransformerBridge or ISaeRFTModel, got "
            f"{type(model).__name__}"
        )
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, (int, float))
        or not math.isfinite(multiplier)
    ):
        raise ValueError(f"multiplier={multiplier!r} must be a finite number")
    mapping = as_vector_dict(vectors)
    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = []
    for hook_name, vector in mapping.items():
        _check_hook(target, hook_name, vector)
        hooks.append((hook_name, _adder(hook_name, vector, float(multiplier))))
    with target.hooks(fwd_hooks=hooks):
        yield target


def as_vector_dict(vectors: VectorsLike) -> dict[str, torch.Tensor]:
    """``{hook_name: 1-D float32 vector}`` from anything :func:`steer` accepts."""
    if isinstance(vectors, SteeringVectors):
        return vectors.as_dict()
    if isinstance(vectors, (str, Path)):
        return load_vectors(vectors)
    if isinstance(vectors, Mapping):
        out = {}
        for hook_name, vector in vectors.items():
            if not isinstance(vector, torch.Tensor):
                raise TypeError(
                    f"vector for {hook_name!r} must be a torch.Tensor, got {type(vector).__name__}"
                )
            out[str(hook_name)] = vector.detach().flatten().float()
        return out
    raise TypeError(
        "vectors must be SteeringVectors, a {hook: tensor} mapping or a file path, "
        f"got {type(vectors).__name__}"
    )


def load_vectors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read any file ``isaerft export`` writes into ``{hook_name: vector}``.

    The format is recognised from the file (see :mod:`isaerft.export.formats`). llama.cpp GGUF
    ``direction.N`` and steering-vectors layer ``N`` both come back as
    ``blocks.N.hook_resid_post``; native files keep their hook names.
    """
    return format_of_file(path).read(Path(path))


def _check_hook(model: LanguageModel, hook_name: str, vector: torch.Tensor) -> None:
    if hook_name not in model.hook_dict:
        close = difflib.get_close_matches(hook_name, list(model.hook_dict), n=3)
        raise ValueError(f"hook {hook_name!r} is not in the model; did you mean one of {close}?")
    if hook_name.endswith(_RESIDUAL_WIDTH_HOOKS) and vector.numel() != model.cfg.d_model:
        raise ValueError(
            f"the vector for {hook_name!r} has {vector.numel()} entries but the model's "
            f"d_model is {model.cfg.d_model}; it was exported from a different model"
        )
    if not torch.isfinite(vector).all():
        raise ValueError(f"the vector for {hook_name!r} has NaN or infinite entries")


def _adder(hook_name: str, vector: torch.Tensor, multiplier: float) -> Callable[..., torch.Tensor]:
    cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
    scaled = vector.detach().float() * multiplier

    def add(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        key = (activation.dtype, activation.device)
        if key not in cache:
            cache[key] = _shaped(scaled, activation, hook_name).to(
                activation.device, activation.dtype
            )
        return activation + cache[key]

    return add


def _shaped(vector: torch.Tensor, activation: torch.Tensor, hook_name: str) -> torch.Tensor:
    """The vector shaped like one position of ``activation`` (heads split out for ``hook_z``)."""
    n = vector.numel()
    if activation.shape[-1] == n:
        return vector
    if activation.dim() >= 4 and activation.shape[-2] * activation.shape[-1] == n:
        return vector.reshape(activation.shape[-2:])
    raise ValueError(
        f"the vector for {hook_name!r} has {n} entries but the activation there has shape "
        f"{tuple(activation.shape)}"
    )
