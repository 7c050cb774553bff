"""Benchmark smoke tests: the scripts in ``benchmarks/`` are importable as top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny models run faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bench_organism(request: pytest.FixtureRequest) -> Any:
    """The tiny organism: the shared ``tiny_organism`` fixture when there is one, else built
    (or read from the on-disk cache) here."""
    try:
        return request.getfixturevalue("tiny_organism")
    except pytest.FixtureLookupError:
        from isaerft.organism import build_organism

        return build_organism("tiny", progress=False)
