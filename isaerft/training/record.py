"""A training's run record, ``run.json``: written when the training starts (:func:`run_record`),
read back without loading models (:func:`read_run_info`) or with them (:func:`load_run`).

The run folder's layout, and reading ``run.json`` checked for format, live in
:mod:`isaerft.runs`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft.backends import LanguageModel
from isaerft.model import ISaeRFTModel
from isaerft.runs import (
    INTERVENTION_DIR,
    ORGANISMS,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    RUN_ID,
    check_finished,
    read_run_record,
    read_summary,
)
from isaerft.specs import (
    OrganismBuildError,
    organism_size,
    resolve_model_spec,
    resolve_sae_spec,
)
from isaerft.training import resolve
from isaerft.training.recipe import TrainRecipe

__all__ = ["RunInfo", "load_run", "read_run_info", "recorded_organisms", "run_record"]


@dataclass
class RunInfo:
    """What a finished (or interrupted) run was: enough to reload or repeat it."""

    run_dir: Path
    recipe: TrainRecipe
    model_spec: str
    sae_specs: list[str]
    data_path: str | None
    seed: int
    labels_path: str | None
    summary: dict[str, Any] | None
    organisms: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{size: cache key}`` of the organism builds the run was trained on; ``recipe`` names
    them pinned (``organism:tiny@<build>``), so reloading never picks up a rebuilt organism."""


def load_run(
    run_dir: str | Path,
    *,
    model: LanguageModel | None = None,
    saes: Sequence[SAE[Any]] | None = None,
    device: str | None = None,
) -> tuple[ISaeRFTModel, RunInfo]:
    """Reload a finished run's trained model and what it was trained on.

    ``model``/``saes`` reuse already-loaded objects (they must be the ones the run used; the
    SAEs are checked by fingerprint); otherwise they are loaded from the run's specs.

    Raises:
        isaerft.runs.RunFolderError: the run is unfinished, or its ``intervention/`` is not
            the one this training saved (checked before any model is loaded).
        isaerft.specs.OrganismBuildError: the run was trained on a build of the model
            organism that is no longer available (it is never loaded on another build).
    """
    info = read_run_info(run_dir)
    check_finished(info.run_dir)
    recipe = info.recipe
    device = device or ("cpu" if model is None else str(next(model.parameters()).device))
    try:
        if model is None:
            model = resolve.load_recipe_model(recipe, device)
        if saes is None:
            saes = resolve.load_recipe_saes(recipe, device)
    except OrganismBuildError as err:
        raise OrganismBuildError(f"cannot load run {info.run_dir}: {err}") from err
    wrapped = ISaeRFTModel.from_pretrained(model, list(saes), info.run_dir / INTERVENTION_DIR)
    return wrapped, info


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read ``run.json`` (and ``summary.json`` when the run finished) without loading models.

    The recipe's ``organism:<size>`` specs come back pinned to the organism builds the run was
    trained on (``organism:<size>@<build>``, see :attr:`RunInfo.organisms`).
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    organisms = recorded_organisms(record)
    return RunInfo(
        run_dir=run_dir,
        recipe=resolve.pin_organisms(TrainRecipe.from_dict(record["recipe"]), organisms),
        model_spec=record["model"],
        sae_specs=list(record["sae"]),
        data_path=record["data_path"],
        seed=int(record["seed"]),
        labels_path=record["labels_path"],
        summary=read_summary(run_dir),
        organisms=organisms,
    )


def recorded_organisms(record: dict[str, Any]) -> dict[str, str]:
    """The organism builds of a run record: its ``organisms``, or for a run recorded before
    those were, the organism cache folders its ``model_path``/``sae_paths`` point into."""
    keys = record.get(ORGANISMS)
    if isinstance(keys, dict):
        return {str(size): str(key) for size, key in keys.items()}
    found: dict[str, str] = {}
    specs = [record.get("model"), *(record.get("sae") or [])]
    paths = [record.get("model_path"), *(record.get("sae_paths") or [])]
    for spec, path in zip(specs, paths):
        size = organism_size(spec) if isinstance(spec, str) else None
        if size and isinstance(path, str):
            folder = Path(path).parent.name  # <cache>/organisms/<size>-<build>/model
            if re.fullmatch(rf"{re.escape(size)}-[0-9a-f]{{12}}", folder):
                found[size] = folder
    return found


def run_record(
    recipe: TrainRecipe, data_path: str, labels: Path | None, run_id: str
) -> dict[str, Any]:
    from isaerft import __version__

    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "isaerft_version": __version__,
        RUN_ID: run_id,
        "model": recipe.model,
        "model_path": resolve_model_spec(recipe.model),
        "sae": list(recipe.sae),
        "sae_paths": [resolve_sae_spec(s) for s in recipe.sae],
        "model_dtype": recipe.model_dtype,
        "data": dataclasses.asdict(recipe.data),
        "data_path": data_path,
        "seed": recipe.trainer.seed,
        "labels_path": str(labels) if labels else None,
        ORGANISMS: resolve.organism_keys(recipe),
        "intervention": INTERVENTION_DIR,
        "recipe": recipe.to_dict(),
    }
