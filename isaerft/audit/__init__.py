"""Auditing: turn a run's learned latent edits into evidence about its training data.

* :func:`audit_runs` audits trained runs: the per-latent table, the comparison with reference
  runs (z-scores, flagged latents, a dataset verdict at a chosen false-positive rate), per-row
  suspicion scores, the baselines, and the written report.
* :func:`audit_dataset` trains the candidate and reference runs on a suspect and a trusted
  dataset first, then audits.
"""

from isaerft.audit.activations import SiteCodes, collect_codes
from isaerft.audit.baselines import (
    DiffResult,
    IntersectionResult,
    dataset_diff,
    latent_churn,
    overlap_rates,
    topk_intersection,
)
from isaerft.audit.conditional import PromptDependence, prompt_dependence
from isaerft.audit.config import AuditConfig
from isaerft.audit.data import AuditData, read_rows, tokenize_rows
from isaerft.audit.dataset import DEFAULT_RECIPE, audit_dataset
from isaerft.audit.evaluate import evaluate_rows, latent_ranks, read_truth
from isaerft.audit.labels import LabelSet, LatentLabel
from isaerft.audit.localize import RowScores, auroc, write_suspects
from isaerft.audit.null import FlaggedLatent, NullComparison, NullConfig, compare_to_null
from isaerft.audit.pipeline import AuditResult, audit_runs
from isaerft.audit.report import SCHEMA_VERSION, read_report, render_markdown, write_report
from isaerft.audit.runs import RunEdits
from isaerft.audit.table import Context, LatentRow, build_table
from isaerft.audit.trigger import TriggerSearch, search_trigger

__all__ = [
    "DEFAULT_RECIPE",
    "SCHEMA_VERSION",
    "AuditConfig",
    "AuditData",
    "AuditResult",
    "Context",
    "DiffResult",
    "FlaggedLatent",
    "IntersectionResult",
    "LabelSet",
    "LatentLabel",
    "LatentRow",
    "NullComparison",
    "NullConfig",
    "PromptDependence",
    "RowScores",
    "RunEdits",
    "SiteCodes",
    "TriggerSearch",
    "audit_dataset",
    "audit_runs",
    "auroc",
    "build_table",
    "collect_codes",
    "compare_to_null",
    "dataset_diff",
    "evaluate_rows",
    "latent_churn",
    "latent_ranks",
    "overlap_rates",
    "prompt_dependence",
    "read_report",
    "read_rows",
    "read_truth",
    "render_markdown",
    "search_trigger",
    "tokenize_rows",
    "topk_intersection",
    "write_report",
    "write_suspects",
]
