"""A recipe's model, SAEs and device: its specs resolved through :mod:`isaerft.specs` and loaded."""

from __future__ import annotations

import dataclasses
import os
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
            f"recipe trainer.accelerator={accelerator} but this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}); use trainer.accelerator=cpu, or install a CUDA build"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ValueError("recipe trainer.accelerator=mps but MPS is not available here; use cpu")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return f"cuda:{local_rank}"
    if accelerator == "mps":
        return "mps"
    return "cpu"


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
