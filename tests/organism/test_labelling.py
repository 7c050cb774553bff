"""label_sae: the build's ground-truth labelling, rerun on a built organism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from isaerft.organism.build import OrganismConfig, corpus_texts
from isaerft.organism.labelling import label_sae
from isaerft.organism.labels import LatentLabels
from isaerft.organism.tokenizer import encode_batch, load_tokenizer


def _relabel(org: Any, out: Path, concepts: bool) -> LatentLabels:
    cfg = OrganismConfig.from_dict(org.meta["config"])
    texts = corpus_texts(cfg, None, out.parent)["eval_text"]
    ids = encode_batch(load_tokenizer(org.model_dir), texts)
    name = str(org.meta["model_name"])
    model, sae = org.load_model(), org.load_sae()
    return label_sae(out, model, sae, ids, name, org.hook_name, concepts=concepts)


def test_relabelling_a_built_organism_gives_its_labels(tiny_organism: Any, tmp_path: Path) -> None:
    built = LatentLabels.load(tiny_organism.labels_path)
    again = _relabel(tiny_organism, tmp_path / "labels.jsonl", concepts=True)
    assert again.names == built.names
    torch.testing.assert_close(again.auroc, built.auroc)
    assert any(n.startswith("concept:") for n in again.names)


def test_without_concepts_only_words_are_labels(tiny_organism: Any, tmp_path: Path) -> None:
    words = _relabel(tiny_organism, tmp_path / "labels.jsonl", concepts=False)
    assert words.names and not any(n.startswith("concept:") for n in words.names)
