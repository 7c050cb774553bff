"""Benchmark smoke tests: the scripts in ``benchmarks/`` are importable as top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from factories import one_torch_thread  # noqa: F401  (autouse fixture)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture(scope="session")
def bench_organism(tiny_organism: Any) -> Any:
    """The tiny organism (the session's shared ``tiny_organism``)."""
    return tiny_organism
