"""Turning recipe specs into objects: models, SAEs, labels, devices and organism datasets."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from isaerft._io import read_json
from isaerft.backends import LanguageModel
from isaerft.loading import (
    find_organism,
    load_model,
    load_sae,
    pin_organism_spec,
    split_organism_spec,
)
from isaerft.training.recipe import OrganismDatasetSpec, TrainRecipe, organism_size

_ORGANISMS: dict[tuple[str, str | None], Any] = {}


def organism(size: str, build: str | None = None) -> Any:
    """The organism ``organism:<size>[@<build>]`` (see :func:`isaerft.loading.find_organism`),
    memoised per process (it is cached on disk)."""
    if (size, build) not in _ORGANISMS:
        try:
            import isaerft.organism  # noqa: F401
        except ImportError as err:
            raise ValueError(
                f"'organism:{size}' needs isaerft.organism, which failed to import: {err}"
            ) from err
        _ORGANISMS[size, build] = find_organism(size, build)
    return _ORGANISMS[size, build]


def _organism_of(spec: str) -> Any:
    """The organism a spec names, or ``None`` for any other spec."""
    parts = split_organism_spec(spec)
    return organism(*parts) if parts else None


def organism_keys(recipe: TrainRecipe) -> dict[str, str]:
    """``{size: cache key}`` of the organisms the recipe's model, SAEs and labels resolve to
    (e.g. ``{"tiny": "tiny-284cfcbc3eb8"}``): recorded in ``run.json`` so the run reloads on
    exactly these builds (:func:`pin_organisms`)."""
    keys = {}
    for spec in (recipe.model, *recipe.sae, recipe.labels or ""):
        org = _organism_of(spec)
        if org is not None:
            keys[org.preset] = str(org.meta["key"])
    return keys


def pin_organisms(recipe: TrainRecipe, keys: dict[str, str]) -> TrainRecipe:
    """``recipe`` with its ``organism:<size>`` specs pinned to the builds ``keys`` names
    (``organism:<size>@<build>``); other specs unchanged."""
    return dataclasses.replace(
        recipe,
        model=pin_organism_spec(recipe.model, keys),
        sae=[pin_organism_spec(s, keys) for s in recipe.sae],
        labels=pin_organism_spec(recipe.labels, keys) if recipe.labels else recipe.labels,
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


def resolve_model_spec(spec: str) -> str:
    """A model spec with ``organism:<size>[@<build>]`` replaced by the organism's model folder."""
    org = _organism_of(spec)
    return str(org.model_dir) if org is not None else spec


def resolve_sae_spec(spec: str) -> str:
    """An SAE spec with ``organism:<size>[@<build>]`` replaced by the organism's SAE folder."""
    org = _organism_of(spec)
    return str(org.sae_dir) if org is not None else spec


IN_MEMORY_MODEL = "<in-memory model>"
IN_MEMORY_SAE = "<in-memory sae>"
"""Specs recorded for runs trained on objects passed in memory: they cannot be reloaded."""


def _reloadable(spec: str, what: str) -> str:
    if spec in (IN_MEMORY_MODEL, IN_MEMORY_SAE):
        raise ValueError(
            f"this run was trained on an {what} passed in memory (recorded as {spec!r}), so it "
            "cannot be reloaded by name: pass the same model and SAEs again "
            "(audit_runs(..., model=..., saes=...), or --model/--sae on the command line)"
        )
    return spec


def load_recipe_model(recipe: TrainRecipe, device: str) -> LanguageModel:
    """Load the recipe's frozen model on ``device`` in ``recipe.model_dtype``: a
    ``HookedTransformer``, or a ``TransformerBridge`` when ``recipe.model_backend`` is
    ``bridge``."""
    spec = resolve_model_spec(_reloadable(recipe.model, "model"))
    return load_model(
        spec, device=device, dtype=recipe.model_dtype, bridge=recipe.model_backend == "bridge"
    )


def load_recipe_saes(recipe: TrainRecipe, device: str) -> list[SAE[Any]]:
    """Load the recipe's SAEs on ``device`` in ``recipe.model_dtype``."""
    return [
        load_sae(
            resolve_sae_spec(_reloadable(spec, "SAE")), device=device, dtype=recipe.model_dtype
        )
        for spec in recipe.sae
    ]


def resolve_labels(recipe: TrainRecipe) -> Path | None:
    """The label file: ``recipe.labels`` (a path or ``organism:<size>``), else the organism's
    labels when the (single) SAE is an organism's, else ``None``."""
    spec = recipe.labels
    if spec is None:
        sizes = {organism_size(s) for s in recipe.sae}
        if len(sizes) == 1 and None not in sizes:
            spec = recipe.sae[0]  # the organism's own labels (of the same build, if pinned)
        else:
            return None
    org = _organism_of(spec)
    path = Path(org.labels_path) if org is not None else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"latent label file {path} not found; fix the recipe's labels")
    return path


def organism_dataset(spec: OrganismDatasetSpec, recipe: TrainRecipe, out_dir: Path) -> Path:
    """Generate (or reuse) the organism dataset of ``spec`` under ``out_dir``; returns its path."""
    size = spec.organism or organism_size(recipe.model)
    pinned = split_organism_spec(recipe.model)
    build = pinned[1] if pinned and pinned[0] == size else None
    if size is None:
        raise ValueError(
            "data.organism_dataset needs an organism: set data.organism_dataset.organism "
            "(tiny/small) or use model: organism:<size>"
        )
    out = out_dir / f"{spec.kind}.jsonl"
    wanted = {k: v for k, v in dataclasses.asdict(spec).items() if v is not None}
    meta_path = out_dir / f"{spec.kind}.spec.json"
    # Regenerate only when the spec changed: ranks > 0 and resumed runs reuse the file.
    if out.is_file() and meta_path.is_file() and read_json(meta_path) == wanted:
        return out
    from isaerft._io import write_json
    from isaerft.organism import make_dataset

    org = organism(size, build)
    kwargs: dict[str, Any] = {"n": spec.n, "seed": spec.seed, "organism": org}
    for name in ("trigger", "target", "fraction"):
        if getattr(spec, name) is not None:
            kwargs[name] = getattr(spec, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_dataset(spec.kind, out, **kwargs)
    write_json(meta_path, wanted)
    return out
