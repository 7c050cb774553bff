"""The audit v2 benchmark, run as ``python -m benchmarks.audit_v2`` (see :mod:`.run`).

It reuses the audit-poison grid and cells (:mod:`benchmarks.audit_poison`).
"""
