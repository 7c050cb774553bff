"""Opening a trained intervention from a run directory or a bare intervention folder."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from isaerft.artifact import CONFIG_FILE
from isaerft.loading import load_model, load_sae
from isaerft.model import ISaeRFTModel

RUN_FILE = "run.json"
INTERVENTION_DIR = "intervention"


def intervention_folder(run: Path) -> Path | None:
    """``RUN/intervention`` for a run directory, ``RUN`` for an intervention folder, else None."""
    for candidate in (run / INTERVENTION_DIR, run):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def load_isaerft_model(
    run: str | Path,
    *,
    model_spec: str | None = None,
    sae_specs: Sequence[str] | None = None,
    device: str | None = None,
) -> ISaeRFTModel:
    """Rebuild the trained :class:`~isaerft.ISaeRFTModel` of a run.

    ``run`` is a training run directory (``run.json`` + ``intervention/``, opened with
    ``isaerft.training.load_run``) or a folder written by ``save_pretrained``. Passing
    ``model_spec`` and ``sae_specs`` (local folders or hub names, see
    :func:`isaerft.load_model` / :func:`isaerft.load_sae`) loads the base model and SAEs
    from there instead, which a bare intervention folder always needs.
    """
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"run {run} not found")
    explicit = model_spec is not None or bool(sae_specs)
    if not explicit and (run / RUN_FILE).is_file():
        return _load_training_run(run, device)
    folder = intervention_folder(run)
    if folder is None:
        raise FileNotFoundError(
            f"{run} is neither a training run ({RUN_FILE} + {INTERVENTION_DIR}/) nor an "
            f"intervention folder ({CONFIG_FILE}); point at the directory training wrote"
        )
    if model_spec is None or not sae_specs:
        raise ValueError(
            f"{folder} is a bare intervention folder: pass the base model and the SAE(s) it was "
            "trained on (CLI: --model SPEC --sae SPEC [--sae SPEC ...])"
        )
    base = load_model(model_spec, device=device)
    saes = [load_sae(spec, device=str(base.cfg.device), dtype=base.cfg.dtype) for spec in sae_specs]
    return ISaeRFTModel.from_pretrained(base, saes, folder)


def _load_training_run(run: Path, device: str | None) -> ISaeRFTModel:
    try:
        training = importlib.import_module("isaerft.training")
    except ModuleNotFoundError as err:
        if err.name not in ("isaerft.training", "isaerft"):
            raise
        raise ValueError(
            f"{run} is a training run but isaerft.training is not available to open it; "
            "pass --model SPEC and --sae SPEC to load its intervention/ folder directly"
        ) from err
    model, _info = training.load_run(run, device=device)
    if not isinstance(model, ISaeRFTModel):
        raise TypeError(
            f"isaerft.training.load_run returned {type(model).__name__}, not ISaeRFTModel"
        )
    return model
