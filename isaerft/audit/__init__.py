"""Auditing: turn a run's learned latent edits into evidence about its training data.

* :func:`audit_dataset` trains the candidate and reference runs on a suspect and a trusted
  dataset, then audits.
* :func:`audit_runs` audits trained runs: the per-latent table, the comparison with reference
  runs (a dataset verdict at a chosen false-positive rate), the implicated latents, per-row
  suspicion scores, the baselines, and the written report.

Everything else is importable from its module (``isaerft.audit.data``, ``.trigger``,
``.attribution``, ...); see ``docs/architecture.md``.
"""

from isaerft.audit.config import AuditConfig
from isaerft.audit.dataset import DEFAULT_RECIPE, audit_dataset
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullConfig, compare_to_null
from isaerft.audit.pipeline import AuditResult, audit_runs
from isaerft.audit.report import SCHEMA_VERSION, read_report
from isaerft.audit.runs import RunEdits

__all__ = [
    "DEFAULT_RECIPE",
    "SCHEMA_VERSION",
    "AuditConfig",
    "AuditResult",
    "LabelSet",
    "NullConfig",
    "RunEdits",
    "audit_dataset",
    "audit_runs",
    "compare_to_null",
    "read_report",
]
