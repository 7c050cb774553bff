"""``docs/benchmarks.md`` and its plots, rendered from ``benchmarks/results/*.json`` alone:
``python -m benchmarks.docs`` (see :mod:`.page`). One module per section: ``poison``
(audit-poison), ``audit_v2`` (audit v2 and the learnability map), ``steps`` (step time) and
``threads``. ``docs/comparison.md`` is rendered by ``benchmarks.finetune_quality.docs``.
"""
