"""Fixtures for the audit tests (defined in ``helpers.py``, shared with ``tests/cli``)."""

from audit.helpers import tiny_audit, tiny_runs

__all__ = ["tiny_audit", "tiny_runs"]
