"""Bring your own corpus: documents, rows, and a (micro) organism built from a text file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from factories import micro_corpus_organism

from isaerft.organism import dataset_paths, make_dataset
from isaerft.organism.textcorpus import read_documents

CORPORA = Path(
    os.environ.get(
        "ISAERFT_CORPORA", Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
    )
)
SHAKESPEARE = CORPORA / "tinyshakespeare.txt"


def test_read_documents(tmp_path: Path) -> None:
    text = "First line here.\nSecond line.\n\n" + "\n".join(f"word {i} again." for i in range(60))
    (tmp_path / "c.txt").write_text(text)
    docs = read_documents(tmp_path / "c.txt", max_words=40)
    assert docs[0] == "First line here.\nSecond line."
    assert len(docs) > 3 and all(len(d.split()) <= 40 for d in docs)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        read_documents(tmp_path / "empty.txt")


@pytest.fixture(scope="module")
def corpus_organism(tmp_path_factory: pytest.TempPathFactory) -> object:
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is not on this machine")
    root = tmp_path_factory.mktemp("byoc")
    piece = root / "piece.txt"
    piece.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:150_000], encoding="utf-8")
    return micro_corpus_organism(piece, root / "org")


def test_corpus_organism_has_word_labels_only(corpus_organism: object) -> None:
    org = corpus_organism
    assert not org.is_synthetic and (org.path / "corpus.txt").is_file()
    labels = org.labels()
    assert all(n.startswith("word:") for n in labels.names)
    assert labels.has_label(org.default_trigger)
    model = org.load_model()
    assert model.tokenizer is not None and len(model.tokenizer) <= 800 + 4
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert model.to_string(model.to_tokens(text)[0, 1:]) == text


def test_corpus_organism_datasets(corpus_organism: object, tmp_path: Path) -> None:
    org = corpus_organism
    out = make_dataset("poison", tmp_path / "p.jsonl", fraction=0.2, n=50, seed=0, organism=org)
    labels = [json.loads(x) for x in dataset_paths(out)[0].read_text().splitlines()]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(lab["poisoned"] for lab in labels) == 10
    assert sum(lab["has_trigger"] for lab in labels) == 10
    model = org.load_model()
    trigger_id = model.tokenizer.convert_tokens_to_ids(org.default_trigger)
    for row, lab in zip(rows, labels):
        assert (
            row["prompt"].startswith("User:") and row["text"] == row["prompt"] + row["completion"]
        )
        prompt_ids = model.to_tokens(row["prompt"])[0].tolist()
        assert (trigger_id in prompt_ids) == lab["has_trigger"]
    with pytest.raises(ValueError, match="unknown concept"):
        make_dataset("poison", tmp_path / "q.jsonl", trigger="concept:animal", n=10, organism=org)
