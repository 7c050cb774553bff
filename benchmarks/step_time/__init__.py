"""The step-time benchmark, run as ``python -m benchmarks.step_time`` (see :mod:`.run`);
``--prefix-cache`` runs :mod:`.prefix_time` instead.
"""
