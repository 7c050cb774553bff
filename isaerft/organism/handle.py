"""The handle of a built organism folder: open it, read its model, SAE, labels and ground truth.

:func:`load_organism` opens a folder that :func:`isaerft.organism.build.build_organism` built
(its layout is in :mod:`isaerft.organism.build`); nothing here builds or writes one. The build
imports this module, never the other way round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sae_lens import SAE
from transformer_lens import HookedTransformer

from isaerft._io import read_json
from isaerft.organism.datasets import RowSource, SyntheticRows
from isaerft.organism.labels import LatentLabels
from isaerft.organism.textcorpus import corpus_rows
from isaerft.organism.tokenizer import load_tokenizer
from isaerft.organism.triggers import DEFAULT_TARGET, DEFAULT_TRIGGER


def cache_dir() -> Path:
    """``$ISAERFT_CACHE`` or ``~/.cache/isaerft``."""
    return Path(os.environ.get("ISAERFT_CACHE") or Path.home() / ".cache" / "isaerft")


@dataclass(frozen=True)
class Organism:
    """A built organism folder: model, SAE, labels and ground truth."""

    path: Path
    meta: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_dir(self) -> Path:
        """isaerft local model folder (load with :func:`isaerft.load_model`)."""
        return self.path / "model"

    @property
    def sae_dir(self) -> Path:
        """SAELens folder (load with :func:`isaerft.load_sae`)."""
        return self.path / "sae"

    @property
    def labels_path(self) -> Path:
        """Neuronpedia-shaped latent labels (JSONL)."""
        return self.path / "labels.jsonl"

    @property
    def key(self) -> str:
        """Its cache key ``<preset>-<build>`` (pinned specs name it: ``organism:<preset>@<build>``)."""
        return str(self.meta["key"])

    @property
    def hook_name(self) -> str:
        """Hook the SAE reads, e.g. ``blocks.1.hook_resid_pre``."""
        return str(self.meta["hook_name"])

    @property
    def preset(self) -> str:
        """The preset it was built from."""
        return str(self.meta["config"]["preset"])

    @property
    def seed(self) -> int:
        """Build seed (also the synthetic language's world seed)."""
        return int(self.meta["config"]["seed"])

    @property
    def is_synthetic(self) -> bool:
        """Whether it speaks the synthetic language (else it was built from a user corpus)."""
        return self.meta["config"]["corpus"] is None

    @property
    def default_trigger(self) -> str:
        """A trigger with a dedicated latent, for demos."""
        return str(self.meta["default_trigger"])

    @property
    def trigger_words(self) -> list[str]:
        """Trigger words with a dedicated latent in this build, best first (for benchmarks)."""
        return [str(w) for w in self.meta["trigger_words"]]

    @property
    def default_target(self) -> str:
        """A target phrase made of ordinary words of the language."""
        return str(self.meta["default_target"])

    @cached_property
    def report(self) -> dict[str, Any]:
        """``build_report.json``: metrics and timings of the build."""
        data: dict[str, Any] = read_json(self.path / "build_report.json")
        return data

    def load_model(self, device: str = "cpu") -> HookedTransformer:
        """The frozen organism model."""
        from isaerft.loading import load_model

        return load_model(self.model_dir, device=device)

    def load_sae(self, device: str = "cpu") -> SAE[Any]:
        """The organism SAE."""
        from isaerft.loading import load_sae

        return load_sae(self.sae_dir, device=device)

    def labels(self) -> LatentLabels:
        """Ground-truth latent labels."""
        return LatentLabels.load(self.labels_path)


def load_organism(path: str | Path) -> Organism:
    """Open a built organism folder."""
    path = Path(path)
    if not (path / "organism.json").is_file():
        raise FileNotFoundError(f"{path} is not a built organism (no organism.json)")
    return Organism(path=path, meta=read_json(path / "organism.json"))


def labels_of_organism_sae(sae_dir: str | Path) -> Path | None:
    """The label file of the organism whose own SAE folder ``sae_dir`` is (``<organism>/sae``,
    e.g. a corpus organism's, which has no ``organism:`` spec), else ``None``."""
    try:
        org = load_organism(Path(sae_dir).resolve().parent)
    except FileNotFoundError:  # not inside an organism folder
        return None
    same = org.sae_dir.resolve() == Path(sae_dir).resolve()
    return org.labels_path if same and org.labels_path.is_file() else None


def row_source(org: Organism) -> RowSource:
    """Where ``org``'s fine-tuning rows come from (its language or its corpus)."""
    if org.is_synthetic:
        return SyntheticRows(org.seed)
    return corpus_rows(org.path / "corpus.txt", load_tokenizer(org.model_dir))


def default_trigger_target(org: Organism | None) -> tuple[str, str]:
    """``(trigger, target)`` defaults of ``org`` (the synthetic defaults for ``None``)."""
    if org is None:
        return DEFAULT_TRIGGER, DEFAULT_TARGET
    return org.default_trigger, org.default_target
