"""Shared fixtures. Expensive artifacts are session-scoped and cached on disk by config hash."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing them when tests run helper processes.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_organism() -> object:
    """The ``tiny`` model organism (``isaerft.organism.Organism``), built once and cached on disk.

    It lives in ``$ISAERFT_CACHE`` (default ``~/.cache/isaerft``) under ``organisms/tiny-<hash>``,
    so later test runs reuse it; the first build takes about a minute on two cores.
    """
    from isaerft.organism import build_organism

    return build_organism("tiny", seed=0, progress=False)
