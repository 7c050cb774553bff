"""Turning recipe specs into objects: models, SAEs, labels, devices and organism datasets."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer

from isaerft._io import read_json
from isaerft.loading import load_model, load_sae
from isaerft.training.recipe import OrganismDatasetSpec, TrainRecipe, organism_size

_ORGANISMS: dict[str, Any] = {}


def organism(size: str) -> Any:
    """``isaerft.organism.build_organism(size)``, memoised per process (it is cached on disk)."""
    if size not in _ORGANISMS:
        try:
            from isaerft.organism import build_organism
        except ImportError as err:
            raise ValueError(
                f"'organism:{size}' needs isaerft.organism, which failed to import: {err}"
            ) from err
        _ORGANISMS[size] = build_organism(size, seed=0)
    return _ORGANISMS[size]


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
    """A model spec with ``organism:<size>`` replaced by the organism's model folder."""
    size = organism_size(spec)
    return str(organism(size).model_dir) if size else spec


def resolve_sae_spec(spec: str) -> str:
    """An SAE spec with ``organism:<size>`` replaced by the organism's SAE folder."""
    size = organism_size(spec)
    return str(organism(size).sae_dir) if size else spec


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


def load_recipe_model(recipe: TrainRecipe, device: str) -> HookedTransformer:
    """Load the recipe's frozen model on ``device`` in ``recipe.model_dtype``."""
    spec = resolve_model_spec(_reloadable(recipe.model, "model"))
    return load_model(spec, device=device, dtype=recipe.model_dtype)


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
            spec = f"organism:{next(iter(sizes))}"
        else:
            return None
    size = organism_size(spec)
    path = Path(organism(size).labels_path) if size else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"latent label file {path} not found; fix the recipe's labels")
    return path


def organism_dataset(spec: OrganismDatasetSpec, recipe: TrainRecipe, out_dir: Path) -> Path:
    """Generate (or reuse) the organism dataset of ``spec`` under ``out_dir``; returns its path."""
    size = spec.organism or organism_size(recipe.model)
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

    org = organism(size)
    kwargs: dict[str, Any] = {"n": spec.n, "seed": spec.seed, "organism": org}
    for name in ("trigger", "target", "fraction"):
        if getattr(spec, name) is not None:
            kwargs[name] = getattr(spec, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_dataset(spec.kind, out, **kwargs)
    write_json(meta_path, wanted)
    return out
