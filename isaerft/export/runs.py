"""Opening a trained intervention from a run directory or a bare intervention folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from isaerft.artifact import CONFIG_FILE
from isaerft.loading import load_model, load_sae
from isaerft.model import ISaeRFTModel
from isaerft.runs import INTERVENTION_DIR, RUN_FILE, check_finished


def intervention_folder(run: Path) -> Path | None:
    """``RUN/intervention`` for a run directory, ``RUN`` for an intervention folder, else None.

    A training run's intervention is returned only if the run finished and saved it
    (:func:`isaerft.runs.check_finished` raises otherwise)."""
    if (run / RUN_FILE).is_file():
        check_finished(run)
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
    bridge: bool = False,
) -> ISaeRFTModel:
    """Rebuild the trained :class:`~isaerft.ISaeRFTModel` of a run.

    ``run`` is a training run directory (``run.json`` + ``intervention/``, opened with
    ``isaerft.training.load_run``) or a folder written by ``save_pretrained``. Passing
    ``model_spec`` and ``sae_specs`` (local folders or hub names, see
    :func:`isaerft.load_model` / :func:`isaerft.load_sae`) loads the base model and SAEs
    from there instead, which a bare intervention folder always needs; ``bridge=True`` loads
    ``model_spec`` as a ``TransformerBridge`` (a run's own recipe says so in ``model_backend``).
    """
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"run {run} not found")
    explicit = model_spec is not None or bool(sae_specs)
    if not explicit and (run / RUN_FILE).is_file():
        # Imported here: training (Lightning) is needed only to open a training run.
        from isaerft.training.record import load_run

        return load_run(run, device=device)[0]
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
    base = load_model(model_spec, device=device, bridge=bridge)
    saes = [load_sae(spec, device=str(base.cfg.device), dtype=base.cfg.dtype) for spec in sae_specs]
    return ISaeRFTModel.from_pretrained(base, saes, folder)
