"""The audit-poison benchmark, run as ``python -m benchmarks.audit_poison`` (see :mod:`.run`).

Modules: ``grid`` (trigger families, targets, controls, fractions, seeds), ``cell`` (one cell's
dataset, runs and method scores), ``baselines`` (the full fine-tune and the baselines built on it),
``scoring`` (ground truth and the audit's verdict), ``metrics`` (with bootstrap intervals),
``summary`` (per-cell records to the summary) and ``run`` (the grid end to end, the command
line). ``benchmarks.audit_v2`` and ``benchmarks.audit_learnability`` reuse its grid and cells.
"""
