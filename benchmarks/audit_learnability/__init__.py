"""The learnability map, run as ``python -m benchmarks.audit_learnability`` (see :mod:`.run`).

It reuses the audit-poison grid and cells (:mod:`benchmarks.audit_poison`).
"""
