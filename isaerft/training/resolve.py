"""A recipe's model, SAEs and device: its specs resolved through :mod:`isaerft.specs` and loaded."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
from sae_lens import SAE

from isaerft.backends import LanguageModel
from isaerft.loading import load_model, load_sae
from isaerft.specs import (
    pin_spec,
    reloadable_spec,
    resolve_model_spec,
    resolve_sae_spec,
    spec_keys,
)
from isaerft.training.recipe import TrainRecipe


def organism_keys(recipe: TrainRecipe) -> dict[str, str]:
    """``{size: cache key}`` of the organisms the recipe's model, SAEs and labels resolve to
    (e.g. ``{"tiny": "tiny-284cfcbc3eb8"}``): recorded in ``run.json`` so the run reloads on
    exactly these builds (:func:`pin_organisms`)."""
    return spec_keys((recipe.model, *recipe.sae, recipe.labels or ""))


def pin_organisms(recipe: TrainRecipe, keys: dict[str, str]) -> TrainRecipe:
    """``recipe`` with its ``organism:<size>`` specs pinned to the builds ``keys`` names
    (``organism:<size>@<build>``); other specs unchanged."""
    return dataclasses.replace(
        recipe,
        model=pin_spec(recipe.model, keys),
        sae=[pin_spec(s, keys) for s in recipe.sae],
        labels=pin_spec(recipe.labels, keys) if recipe.labels else recipe.labels,
    )


def torch_device(accelerator: str) -> str:
    """The device this process loads the model on, for a Lightning ``accelerator`` name."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"trainer.accelerator={accelerator} (or --device cuda) but this torch build sees no "
            f"CUDA GPU (torch {torch.__version__}); use cpu, or install a CUDA build of torch"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "trainer.accelerator=mps (or --device mps) but MPS is not available here; use cpu"
        )
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return f"cuda:{local_rank}"
    if accelerator == "mps":
        return "mps"
    return "cpu"


def accelerator_for(device: str) -> str:
    """The Lightning ``accelerator`` that trains on torch ``device`` (``cpu``, ``cuda``,
    ``mps``); another CUDA card than the first is picked with ``CUDA_VISIBLE_DEVICES``."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if index not in ("", "0"):
            raise ValueError(
                f"device {device!r}: runs train on the first visible GPU; pick card {index} "
                f"with CUDA_VISIBLE_DEVICES={index} and pass device 'cuda'"
            )
        return "gpu"
    if kind in ("cpu", "mps") and not index:
        return kind
    raise ValueError(f"device {device!r} is not one of cpu, cuda, mps")


def place(model: LanguageModel, saes: Sequence[SAE[Any]], device: str) -> None:
    """Put a model and SAEs passed in by the caller on ``device``, with TransformerLens'
    ``cfg.device`` in step: Lightning hands a fitted module back on the CPU while
    ``cfg.device`` still names the GPU, so a model reused for the next run (as the audit
    does) would otherwise send its inputs to one device and hold its weights on another."""
    target = torch.device(device)
    param = next(model.parameters(), None)
    named = torch.device(str(model.cfg.device or "cpu"))
    if param is not None and (param.device != target or named != target):
        model.to(target, print_details=False)
    for sae in saes:
        sae_param = next(sae.parameters(), None)
        if sae_param is not None and sae_param.device != target:
            sae.to(target)


def load_recipe_model(recipe: TrainRecipe, device: str) -> LanguageModel:
    """Load the recipe's frozen model on ``device`` in ``recipe.model_dtype``: a
    ``HookedTransformer``, or a ``TransformerBridge`` when ``recipe.model_backend`` is
    ``bridge``."""
    spec = resolve_model_spec(reloadable_spec(recipe.model, "model"))
    return load_model(
        spec, device=device, dtype=recipe.model_dtype, bridge=recipe.model_backend == "bridge"
    )


def load_recipe_saes(recipe: TrainRecipe, device: str) -> list[SAE[Any]]:
    """Load the recipe's SAEs on ``device`` in ``recipe.model_dtype``."""
    return [
        load_sae(
            resolve_sae_spec(reloadable_spec(spec, "SAE")), device=device, dtype=recipe.model_dtype
        )
        for spec in recipe.sae
    ]
