"""Benchmark smoke tests: each benchmark is a package, imported as ``benchmarks.<name>`` (the
repository root is on pytest's ``pythonpath``)."""

from __future__ import annotations

from typing import Any

import pytest
from factories import one_torch_thread  # noqa: F401  (autouse fixture)


@pytest.fixture(scope="session")
def bench_organism(tiny_organism: Any) -> Any:
    """The tiny organism (the session's shared ``tiny_organism``)."""
    return tiny_organism
