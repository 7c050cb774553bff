"""Resuming an interrupted run: which training it continues (its run id), from which step,
and what must not have changed since it started (its organism builds, its check tag)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from isaerft.runs import RUN_ID, read_run_record
from isaerft.specs import OrganismBuildError, unpin_spec
from isaerft.training import resolve
from isaerft.training.data import TokenizedData
from isaerft.training.recipe import TrainRecipe
from isaerft.training.record import recorded_organisms

__all__ = ["check_resumed_organisms", "check_tag", "checkpoint_step", "resumed_run_id"]


def resumed_run_id(run_dir: Path) -> str | None:
    """The id of the interrupted training being resumed (a new one if its record is unreadable)."""
    try:
        run_id = read_run_record(run_dir).get(RUN_ID)
    except (OSError, ValueError):
        return None
    return str(run_id) if run_id else None


def checkpoint_step(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["global_step"])


def check_tag(recipe: TrainRecipe, data: TokenizedData) -> str:
    """Identifies what determines the trained result, so a resume on anything else fails."""
    record = recipe.to_dict()
    trainer = record.pop("trainer")
    record["trainer"] = {
        k: trainer[k] for k in ("max_steps", "epochs", "accumulate_grad_batches", "seed")
    }
    # optim may change on resume (lower lr, set grad_clip): the module re-applies it.
    for key in ("name", "output_dir", "labels", "optim"):
        record.pop(key)
    # Which organism build a spec resolves to is checked on its own (check_resumed_organisms),
    # so an interrupted run may be resumed with its build pinned (organism:tiny@<build>).
    record["model"] = unpin_spec(record["model"])
    record["sae"] = [unpin_spec(spec) for spec in record["sae"]]
    record["data_fingerprint"] = data.fingerprint()
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def check_resumed_organisms(run_dir: Path, recipe: TrainRecipe) -> None:
    """Refuse to resume a run on another organism build than the one it started on."""
    try:
        recorded = recorded_organisms(read_run_record(run_dir))
    except (OSError, ValueError):
        return  # no readable record: the checkpoint's own checks decide
    current = resolve.organism_keys(recipe)
    for size, key in sorted(recorded.items()):
        now = current.get(size)
        if now is not None and now != key:
            raise OrganismBuildError(
                f"{run_dir} is an interrupted run trained on organism build {key}, but "
                f"organism:{size} is now build {now}: resuming would continue it on another "
                f"model; resume it on its own build with model/sae organism:{size}@"
                f"{key.removeprefix(size + '-')} (while that build is in the organism cache), "
                "or train afresh with trainer.resume=never"
            )
