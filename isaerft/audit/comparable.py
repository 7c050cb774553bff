"""Like with like: the reference runs must be trained the way the candidate was.

A reference run's edits are the audit's picture of "what ordinary data teaches with this
recipe". Trained with another learning rate, L1 weight, step count, batch size or data size,
its edits differ for reasons that have nothing to do with the data, and the verdict would
compare recipes instead of datasets. :func:`recipe_differences` lists every training setting
that differs between the candidate and a reference run (read from their ``run.json`` and
``summary.json``); the audit refuses to give a verdict over such a difference unless told to
(then the verdict says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isaerft.config import ISaeRFTConfig
from isaerft.configbase import ConfigBase
from isaerft.runs import RUN_FILE, read_run_record, read_summary
from isaerft.training.recipe import ObjectiveConfig, OptimConfig

COMPARED_SECTIONS = ("intervention", "objective", "optim")
"""Recipe sections compared whole: component and regulariser, objective, optimiser."""
SECTION_CONFIGS: dict[str, type[ConfigBase]] = {
    "intervention": ISaeRFTConfig,
    "objective": ObjectiveConfig,
    "optim": OptimConfig,
}
"""The config class of each compared section, whose defaults fill a key a record lacks."""
COMPARED_FIELDS = (
    ("data", "batch_size"),
    ("data", "max_length"),
    ("data", "packing"),
    ("trainer", "accumulate_grad_batches"),
    ("trainer", "precision"),
)
"""Single recipe fields compared; the data itself, seeds and paths may differ."""
COMPARED_SUMMARY = (("steps", "optimizer steps"), ("rows", "training rows"))
"""Measured facts of a finished run compared (from ``summary.json``)."""


def training_record(run_dir: str | Path) -> dict[str, Any] | None:
    """``{"recipe": ..., "summary": ...}`` of a run directory, or ``None`` for a bare saved
    intervention (nothing to compare)."""
    path = Path(run_dir)
    if not (path / RUN_FILE).is_file():
        return None
    record = read_run_record(path)
    return {"recipe": record.get("recipe") or {}, "summary": read_summary(path) or {}}


def recipe_differences(candidate: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`training_record` results."""
    out: list[str] = []
    a, b = candidate["recipe"], reference["recipe"]
    for section in COMPARED_SECTIONS:
        sa, sb = _with_defaults(section, a), _with_defaults(section, b)
        for key in sorted(set(sa) | set(sb)):
            va, vb = sa.get(key), sb.get(key)
            if va != vb:
                out.append(f"{section}.{key}: {va!r} vs {vb!r}")
    for section, key in COMPARED_FIELDS:
        va, vb = (a.get(section) or {}).get(key), (b.get(section) or {}).get(key)
        if va != vb:
            out.append(f"{section}.{key}: {va!r} vs {vb!r}")
    for key, what in COMPARED_SUMMARY:
        va, vb = candidate["summary"].get(key), reference["summary"].get(key)
        if va is not None and vb is not None and va != vb:
            out.append(f"{what}: {va} vs {vb}")
    return out


def _with_defaults(section: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe section with the config's default for every key it lacks: a run recorded
    before a setting existed trained as that setting's default does."""
    defaults = SECTION_CONFIGS[section]().to_dict()
    return {**defaults, **(recipe.get(section) or {})}


def compare_recipes(candidate: str | Path, references: list[str | Path]) -> dict[str, list[str]]:
    """Per reference run (by source), its differences from the candidate; runs without a
    ``run.json`` (bare interventions) are skipped."""
    cand = training_record(candidate)
    if cand is None:
        return {}
    out: dict[str, list[str]] = {}
    for ref in references:
        record = training_record(ref)
        if record is not None:
            diff = recipe_differences(cand, record)
            if diff:
                out[str(ref)] = diff
    return out


def mismatch_message(differences: dict[str, list[str]]) -> str:
    """One line naming the first mismatching reference, its differences and the fix."""
    ref, diff = next(iter(differences.items()))
    more = f" (and {len(differences) - 1} more reference run(s))" if len(differences) > 1 else ""
    return (
        f"reference run {ref} was not trained like the candidate: {'; '.join(diff)}{more}; "
        "train the references with the candidate's recipe (isaerft audit-dataset does), or "
        "pass allow_recipe_mismatch (--allow-recipe-mismatch) to compare anyway"
    )
