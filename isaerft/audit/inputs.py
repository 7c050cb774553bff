"""What an audit reads, loaded once: :class:`AuditInputs`, made by :func:`load_inputs`.

The runs' edits (as deltas from their start for a differential audit), their comparison with
the reference runs, the labels, the model and SAEs, each run's intervention on the model (the
candidate's and every reference run's, loaded once and shared by every step), and the audited
and trusted rows with their SAE codes. The audit's steps (:mod:`~isaerft.audit.pipeline`)
read this object; none of them loads anything again.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft.audit.activations import SiteCodes, collect_codes
from isaerft.audit.cache import AuditCache, codes_key
from isaerft.audit.comparable import compare_recipes, mismatch_message
from isaerft.audit.config import AuditConfig
from isaerft.audit.data import AuditData, read_rows, tokenize_rows
from isaerft.audit.evaluate import read_truth
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullComparison, compare_to_null
from isaerft.audit.runs import (
    RunEdits,
    check_sae_matches,
    check_same_latents,
    deltas_from_start,
    intervention_dir,
)
from isaerft.backends import LanguageModel
from isaerft.model import ISaeRFTModel


@dataclass
class DataInputs:
    """The audited rows and the models that read them (present only when there is data).

    Attributes:
        model: the frozen model.
        tuned: the candidate's intervention on ``model``.
        references: each reference run's intervention on ``model``, in run order.
        suspect_path: the audited rows' file; ``suspect``: those rows, tokenised.
        codes: the audited rows' SAE codes (base model).
        trusted_path: the trusted rows' file, if any; ``trusted``: those rows, tokenised.
        trusted_codes: the trusted rows' SAE codes.
        reference_rows: a sample of each reference run's own training rows (empty unless every
            reference run names a readable data file), for the ``excess_gain`` threshold.
        truth: per audited row, whether it is poisoned, when a row label file exists.
    """

    model: LanguageModel
    tuned: ISaeRFTModel
    references: list[ISaeRFTModel]
    suspect_path: str
    suspect: AuditData
    codes: dict[str, SiteCodes]
    trusted_path: str | None
    trusted: AuditData | None
    trusted_codes: dict[str, SiteCodes] | None
    reference_rows: list[AuditData]
    truth: list[bool] | None


@dataclass
class AuditInputs:
    """Everything an audit reads, loaded once.

    Attributes:
        config: what to compute.
        candidate: the candidate run's edits; ``references``: the reference runs' (both as
            deltas from ``start`` in a differential audit).
        start: the differential runs' common start record, else ``None``.
        differences: recipe settings in which the reference runs differ from the candidate.
        comparison: the comparison with the reference runs (``None`` with fewer than 3).
        labels_path: the label file, if any; ``labels``: its labels.
        saes: the SAEs.
        model: the frozen model (``None`` only without data and without ``model=``).
        data: the rows and the models that read them; ``None`` without data.
    """

    config: AuditConfig
    candidate: RunEdits
    references: list[RunEdits]
    start: dict[str, Any] | None
    differences: dict[str, Any]
    comparison: NullComparison | None
    labels_path: str | Path | None
    labels: LabelSet
    saes: list[SAE[Any]]
    model: LanguageModel | None
    data: DataInputs | None


def load_inputs(
    candidate: str | Path | RunEdits,
    references: Sequence[str | Path | RunEdits] = (),
    *,
    data: str | Path | None = None,
    reference_data: str | Path | None = None,
    labels: str | Path | None = None,
    truth: str | Path | None = None,
    model: LanguageModel | None = None,
    saes: Sequence[SAE[Any]] | None = None,
    config: AuditConfig,
    device: str | None = None,
) -> AuditInputs:
    """Read and check what :func:`~isaerft.audit.pipeline.audit_runs` audits (its arguments
    have the same meaning); raises before any step runs when the inputs do not fit."""
    cand = _as_edits(candidate)
    refs = [_as_edits(r) for r in references]
    check_same_latents(cand, refs)
    # Differential runs are compared by what each added to their common trusted start.
    cand, refs, start = deltas_from_start(cand, refs)
    differences = compare_recipes(cand.source, [r.source for r in refs]) if refs else {}
    if differences and not config.allow_recipe_mismatch:
        raise ValueError(mismatch_message(differences))
    comparison = None
    if len(refs) >= 3:
        comparison = compare_to_null(cand, refs, config.null, top=max(config.top, 50))
    elif refs:
        warnings.warn(
            f"{len(refs)} reference run(s) cannot calibrate a null (3 or more needed); the report "
            "ranks latents by their change without a verdict",
            UserWarning,
            stacklevel=3,  # the frame that calls audit_runs
        )
    data = data if data is not None else _run_record(cand, "data_path")
    labels = labels if labels is not None else _run_record(cand, "labels_path")
    label_set = LabelSet.load(labels, cand.sites) if labels else LabelSet.empty()
    if data is None:
        if saes is None:
            raise ValueError("without data the audit still needs the SAEs (saes=) for the table")
        return AuditInputs(
            config, cand, refs, start, differences, comparison, labels, label_set, list(saes),
            model, None,
        )  # fmt: skip
    model, sae_list = _load_models(cand, model, saes, device)
    check_sae_matches(cand, sae_list)
    tuned = ISaeRFTModel.from_pretrained(model, sae_list, intervention_dir(cand.source))
    suspect = _tokenize(data, model)
    codes = _codes(model, sae_list, suspect, config, on_disk=False)
    trusted = _tokenize(reference_data, model) if reference_data is not None else None
    trusted_codes = _codes(model, sae_list, trusted, config, on_disk=True) if trusted else None
    ref_models = [
        ISaeRFTModel.from_pretrained(model, sae_list, intervention_dir(r.source)) for r in refs
    ]
    own_rows = [_training_rows(r, model, config.null_rows) for r in refs]
    own = [rows for rows in own_rows if rows is not None]
    truth = truth if truth is not None else _default_truth(data)
    rows = DataInputs(
        model=model,
        tuned=tuned,
        references=ref_models,
        suspect_path=str(data),
        suspect=suspect,
        codes=codes,
        trusted_path=str(reference_data) if reference_data is not None else None,
        trusted=trusted,
        trusted_codes=trusted_codes,
        reference_rows=own if len(own) == len(own_rows) else [],
        truth=read_truth(truth, len(suspect)) if truth is not None else None,
    )
    return AuditInputs(
        config, cand, refs, start, differences, comparison, labels, label_set, sae_list, model, rows
    )


def _codes(
    model: LanguageModel, saes: list[SAE[Any]], rows: AuditData, config: AuditConfig, on_disk: bool
) -> dict[str, SiteCodes]:
    """The rows' SAE codes, kept across audits (:mod:`isaerft.audit.cache`): in memory, and
    ``on_disk`` in the config's cache folder too (the trusted rows'; an audited set's codes
    would pile up there, one file per dataset)."""
    key = codes_key(model, saes, rows, config.batch_size)
    cache = config.audit_cache() if on_disk else AuditCache()
    return cache.codes(key, lambda: collect_codes(model, saes, rows, batch_size=config.batch_size))


def _as_edits(run: str | Path | RunEdits) -> RunEdits:
    return run if isinstance(run, RunEdits) else RunEdits.load(run)


def _load_models(
    run: RunEdits,
    model: LanguageModel | None,
    saes: Sequence[SAE[Any]] | None,
    device: str | None = None,
) -> tuple[LanguageModel, list[SAE[Any]]]:
    if model is not None and saes is not None:
        return model, list(saes)
    from isaerft.training.record import read_run_info
    from isaerft.training.resolve import load_recipe_model, load_recipe_saes

    run_dir = Path(run.source)
    if not (run_dir / "run.json").is_file():
        raise ValueError(
            f"{run.source} is a bare intervention without run.json, so the audit cannot tell which "
            "model and SAE it edits; pass --model and --sae (model=, saes=)"
        )
    recipe = read_run_info(run_dir).recipe
    if device is None:
        device = str(next(model.parameters()).device) if model is not None else "cpu"
    return (
        model if model is not None else load_recipe_model(recipe, device),
        list(saes) if saes is not None else load_recipe_saes(recipe, device),
    )


def _run_record(run: RunEdits, key: str) -> Any:
    path = Path(run.source) / "run.json"
    if not path.is_file():
        return None
    from isaerft._io import read_json

    return read_json(path).get(key)


def _tokenize(path: str | Path, model: LanguageModel) -> AuditData:
    # BOS as the model's own tokenizer call adds it, so the audit scores what training saw.
    bos = bool(getattr(model.cfg, "default_prepend_bos", True))
    return tokenize_rows(
        read_rows(path), model.tokenizer, model.cfg.n_ctx, source=str(path), prepend_bos=bos
    )


def _training_rows(run: RunEdits, model: LanguageModel, n: int) -> AuditData | None:
    """Up to ``n`` rows (evenly spread) of the data a run trained on, if its ``run.json``
    names a readable file."""
    path = _run_record(run, "data_path")
    if not path or not Path(path).is_file():
        return None
    rows = read_rows(path)
    step = max(1, len(rows) // n)
    return tokenize_rows(rows[::step][:n], model.tokenizer, model.cfg.n_ctx, source=str(path))


def _default_truth(data: str | Path) -> Path | None:
    path = Path(data)
    for candidate in (path.with_suffix(".labels.jsonl"), Path(f"{path}.labels.jsonl")):
        if candidate.is_file():
            return candidate
    return None
