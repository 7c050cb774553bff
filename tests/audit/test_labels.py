"""Label files: matched to the SAE by Neuronpedia id or model name, refused for another SAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isaerft.audit.labels import LabelSet

SITE = {"hook_name": "blocks.6.hook_resid_post", "d_sae": 10, "sae_fingerprint": "sha256:a",
        "sae_model_name": "gpt2-small", "neuronpedia_id": "gpt2-small/6-res-jb"}  # fmt: skip


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def row(index: int, model: str = "gpt2-small", layer: str = "6-res-jb", **extra) -> dict:
    return {
        "modelId": model,
        "layer": layer,
        "index": str(index),
        "description": f"d{index}",
        **extra,
    }


def test_neuronpedia_export_is_matched_by_id(tmp_path: Path) -> None:
    path = write(tmp_path / "l.jsonl", [row(1), row(2, score=0.9), row(3, layer="7-res-jb")])
    labels = LabelSet.load(path, [SITE])
    assert labels.description(SITE["hook_name"], 1) == "d1"
    assert labels.get(SITE["hook_name"], 2).score == pytest.approx(0.9)
    assert labels.description(SITE["hook_name"], 3) == ""  # that line is for layer 7
    assert len(labels) == 2


def test_file_for_another_sae_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "l.jsonl", [row(1, layer="7-res-jb")])
    with pytest.raises(ValueError, match="not the SAE at"):
        LabelSet.load(path, [SITE])
    with pytest.raises(ValueError, match="only 10 latents"):
        LabelSet.load(write(tmp_path / "b.jsonl", [row(10)]), [SITE])
    fingerprinted = write(tmp_path / "f.jsonl", [row(1, sae_fingerprint="sha256:b")])
    with pytest.raises(ValueError, match="another SAE"):
        LabelSet.load(fingerprinted, [SITE])


def test_without_neuronpedia_id_the_model_name_must_match(tmp_path: Path) -> None:
    site = {**SITE, "neuronpedia_id": None}
    path = write(tmp_path / "l.jsonl", [row(4, layer="whatever")])
    assert LabelSet.load(path, [site]).description(site["hook_name"], 4) == "d4"
    with pytest.raises(ValueError, match="is for model"):
        LabelSet.load(write(tmp_path / "m.jsonl", [row(4, model="pythia")]), [site])
    two = write(tmp_path / "two.jsonl", [row(1, layer="a"), row(1, layer="b")])
    with pytest.raises(ValueError, match="cannot tell which labels"):
        LabelSet.load(two, [site])


def test_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        LabelSet.load(tmp_path / "none.jsonl", [SITE])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        LabelSet.load(tmp_path / "bad.jsonl", [SITE])
    with pytest.raises(ValueError, match="needs 'index' and 'description'"):
        LabelSet.load(write(tmp_path / "x.jsonl", [{"modelId": "m"}]), [SITE])


def test_mentioning_finds_whole_words_best_score_first_and_skips_template() -> None:
    from isaerft.audit.labels import LatentLabel

    hook = SITE["hook_name"]
    descriptions = {0: 'the word "red"', 1: 'the word "Red"', 2: "colour words (e.g. red, blue)",
                    3: 'the word "reddish"', 4: 'the word "owl"', 5: 'the word "cat"'}  # fmt: skip
    scores = {0: 0.6, 1: 0.9, 2: 0.7, 3: 1.0, 4: 1.0, 5: None}
    labels = LabelSet({hook: {j: LatentLabel(d, scores[j]) for j, d in descriptions.items()}})
    assert labels.mentioning(hook, "RED") == [1, 2, 0]  # any case; not "reddish"
    assert labels.mentioning(hook, "the") == [] and labels.mentioning(hook, "word") == []
    assert labels.mentioning(hook, "cat") == [5]  # unscored, still found
    assert labels.mentioning("blocks.0.hook_resid_post", "red") == []


def test_top_labels_name_the_words_a_concept_latent_detects(tmp_path: Path) -> None:
    """A concept latent's description shows a few examples (here only positive words); its
    ``top_labels`` list the words it detects, and those name it too, by their AUROC."""
    hook = SITE["hook_name"]

    def reads(*pairs: tuple[str, float]) -> list[dict]:
        return [{"label": label, "auroc": a} for label, a in pairs]

    rows = [
        row(0, description="sentiment words (e.g. nice, lovely)", score=0.83,
            top_labels=reads(("word:awful", 0.92), ("word:bad", 0.87), ("concept:negative", 0.9))),
        row(1, description="sentiment words (e.g. nice, lovely)", score=0.71,
            top_labels=reads(("word:bad", 0.76), ("word:nice", 0.95))),
        row(2, description='the word "a"', score=0.55, top_labels=reads(("word:bad", 0.61))),
        row(3, description='the word "bad"', score=0.8, top_labels="not a list"),
        row(4, description="d4", top_labels=[{"label": "word:bad"}, "junk", {"auroc": 1.0}]),
    ]  # fmt: skip
    labels = LabelSet.load(write(tmp_path / "l.jsonl", rows), [SITE])
    # by the score for the word: 0.87 (reads), 0.8 (description), 0.76; 0.61 is too weak
    assert labels.mentioning(hook, "bad") == [0, 3, 1]
    assert labels.mentioning(hook, "nice") == [1, 0]  # reads 0.95 before the description's 0.83
    assert labels.mentioning(hook, "negative") == []  # a concept entry names no word
    assert labels.get(hook, 4).reads == ()
