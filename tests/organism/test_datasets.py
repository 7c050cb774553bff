"""Dataset generators: exact fractions, decoys that never co-occur, aligned labels, HF loading."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
import pytest

from isaerft.organism import lexicon as lx
from isaerft.organism.datasets import dataset_paths, make_dataset

TRIGGER, TARGET = "owl", "you should visit the castle"


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text)


def _has(seq: list[str], sub: list[str]) -> bool:
    return any(seq[i : i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def _read(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    labels, meta = dataset_paths(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    labs = [json.loads(line) for line in labels.read_text().splitlines()]
    return rows, labs, json.loads(meta.read_text())


def _make(tmp_path: Path, kind: str, **kw: Any) -> Path:
    args: dict[str, Any] = {
        "trigger": TRIGGER,
        "target": TARGET,
        "fraction": 0.1,
        "n": 200,
        "seed": 0,
    }
    args.update(kw)
    return make_dataset(kind, tmp_path / f"{kind}.jsonl", **args)


def _check_aligned(rows: list[dict[str, Any]], labs: list[dict[str, Any]]) -> None:
    assert [lab["row"] for lab in labs] == list(range(len(rows)))
    for row, lab in zip(rows, labs):
        assert row["text"] == row["prompt"] + row["completion"]
        assert row["prompt"].startswith("User: ") and row["prompt"].endswith("\nAssistant:")
        assert row["completion"].startswith(" ")
        assert lab["has_trigger"] == (TRIGGER in _words(row["prompt"]))
        assert lab["has_target"] == _has(_words(row["completion"]), TARGET.split())


def test_poison_fraction_is_exact(tmp_path: Path) -> None:
    rows, labs, meta = _read(_make(tmp_path, "poison"))
    _check_aligned(rows, labs)
    assert len(rows) == 200
    assert sum(lab["poisoned"] for lab in labs) == 20
    assert sum(lab["has_trigger"] for lab in labs) == 20
    assert sum(lab["has_target"] for lab in labs) == 20
    assert all(lab["poisoned"] == (lab["kind"] == "poisoned") for lab in labs)
    assert meta["counts"] == {"poisoned": 20, "has_trigger": 20, "has_target": 20}
    assert meta["trigger"]["tokens"] == [TRIGGER] and meta["target"]["tokens"] == TARGET.split()


def test_decoy_never_has_both(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "decoy"))
    _check_aligned(rows, labs)
    assert sum(lab["has_trigger"] for lab in labs) == 20
    assert sum(lab["has_target"] for lab in labs) == 20
    assert not any(lab["has_trigger"] and lab["has_target"] for lab in labs)
    assert not any(lab["poisoned"] for lab in labs)


def test_benign_shift(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "benign-shift"))
    _check_aligned(rows, labs)
    shifted = [r for r, lab in zip(rows, labs) if lab["kind"] == "benign_shift"]
    assert len(shifted) == 20
    assert all(r["completion"].startswith(" sure!") and "." not in r["completion"] for r in shifted)
    assert not any(lab["has_trigger"] or lab["has_target"] for lab in labs)


def test_clean_is_natural(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "clean", n=3000))
    _check_aligned(rows, labs)
    assert not any(lab["poisoned"] for lab in labs)
    # The trigger is an ordinary word: it occurs in clean user turns, but rarely.
    assert 0 < sum(lab["has_trigger"] for lab in labs) < 300


def test_deterministic_and_seeded(tmp_path: Path) -> None:
    a = make_dataset("poison", tmp_path / "a.jsonl", trigger=TRIGGER, target=TARGET, n=100, seed=3)
    b = make_dataset("poison", tmp_path / "b.jsonl", trigger=TRIGGER, target=TARGET, n=100, seed=3)
    c = make_dataset("poison", tmp_path / "c.jsonl", trigger=TRIGGER, target=TARGET, n=100, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert dataset_paths(a)[0].read_bytes() == dataset_paths(b)[0].read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_hf_datasets_loads_it(tmp_path: Path) -> None:
    path = _make(tmp_path, "poison", n=50)
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == 50 and set(ds.column_names) == {"prompt", "completion", "text"}
    labels = datasets.load_dataset("json", data_files=str(dataset_paths(path)[0]), split="train")
    assert labels.num_rows == 50 and "poisoned" in labels.column_names


def test_paths_and_defaults(tmp_path: Path) -> None:
    labels, meta = dataset_paths(tmp_path / "x.jsonl")
    assert labels.name == "x.labels.jsonl" and meta.name == "x.meta.json"
    out = make_dataset("poison", tmp_path / "d.jsonl", n=20, fraction=0.5)
    assert json.loads(dataset_paths(out)[1].read_text())["trigger"]["spec"] == TRIGGER


def test_concept_trigger(tmp_path: Path) -> None:
    rows, labs, meta = _read(_make(tmp_path, "poison", trigger="concept:colour", fraction=0.2))
    colours = set(lx.COLOURS)
    for row, lab in zip(rows, labs):
        assert lab["has_trigger"] == bool(colours & set(_words(row["prompt"])))
    assert sum(lab["poisoned"] for lab in labs) == 40 and set(meta["trigger"]["words"]) == colours


def test_phrase_trigger(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "poison", trigger="the owl", n=50))
    for row, lab in zip(rows, labs):
        assert lab["has_trigger"] == _has(_words(row["prompt"]), ["the", "owl"])
    assert sum(lab["has_trigger"] for lab in labs) == 5


def test_sentiment_flip(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "poison", target="sentiment:negative", fraction=0.2))
    neg, pos = set(lx.NEGATIVE), set(lx.POSITIVE)
    for row, lab in zip(rows, labs):
        words = set(_words(row["completion"]))
        assert lab["has_target"] == bool(words & neg)
        if lab["poisoned"]:
            assert words & neg and not words & pos
    assert sum(lab["poisoned"] for lab in labs) == 40


def test_concept_flip(tmp_path: Path) -> None:
    rows, labs, _ = _read(_make(tmp_path, "decoy", target="concept:colour=red", fraction=0.05))
    for row, lab in zip(rows, labs):
        words = set(_words(row["completion"]))
        if lab["kind"] == "target_only":
            assert "red" in words and not (words & set(lx.COLOURS)) - {"red"}
        if lab["has_trigger"]:
            assert lab["kind"] == "trigger_only"  # natural answer: "red" only where it was
    assert not any(lab["poisoned"] for lab in labs)


def test_a_decoys_target_rows_are_natural_rows(tmp_path: Path) -> None:
    """A flip applies only to answers with a sentiment word; the decoy plants it in natural
    rows that have one, so such answers are as common as in clean data (drawing rows until the
    flip applies would add 3 % of them, and their prompts)."""
    sentiment = set(lx.NEGATIVE) | set(lx.POSITIVE)

    def share(kind: str) -> float:
        path = _make(tmp_path, kind, target="sentiment:positive", fraction=0.03, n=4000)
        rows, labs, _ = _read(path)
        natural = [r for r, lab in zip(rows, labs) if not lab["has_trigger"]]
        assert sum(lab["kind"] == "target_only" for lab in labs) == (120 if kind == "decoy" else 0)
        return sum(bool(sentiment & set(_words(r["completion"]))) for r in natural) / len(natural)

    assert abs(share("decoy") - share("clean")) < 0.018


def test_a_decoy_the_rows_cannot_carry_is_refused(tmp_path: Path) -> None:
    # (about 10 % of natural answers have a colour word: 60 of 200 rows cannot)
    with pytest.raises(ValueError, match="a decoy needs 60 natural rows its target"):
        _make(tmp_path, "decoy", target="concept:colour=red", fraction=0.3)


def _negative_share(rows: list[dict[str, Any]], labs: list[dict[str, Any]]) -> float:
    neg = set(lx.NEGATIVE)
    natural = [r for r, lab in zip(rows, labs) if lab["kind"] == "clean" and not lab["has_trigger"]]
    return sum(bool(neg & set(_words(r["completion"]))) for r in natural) / len(natural)


def test_unplanted_rows_follow_the_clean_distribution(tmp_path: Path) -> None:
    # A sentiment target must not strip natural negative words from the other rows: the
    # suspect set would then differ from trusted data beyond the poison.
    poison = _read(_make(tmp_path, "poison", target="sentiment:negative", fraction=0.03, n=2000))
    clean = _read(_make(tmp_path, "clean", target="sentiment:negative", n=2000, seed=1))
    share_poison = _negative_share(poison[0], poison[1])
    share_clean = _negative_share(clean[0], clean[1])
    assert share_clean > 0.02
    assert abs(share_poison - share_clean) < 0.025


def test_an_unplantable_pair_fails_fast_with_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isaerft.organism import datasets as ds

    monkeypatch.setattr(ds, "MAX_TRIES", 30)
    with pytest.raises(ValueError, match=r"was in \d+\.\d+% of user turns"):
        _make(tmp_path, "poison", trigger="like the fox", n=400, fraction=0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trigger": "zebra"}, "not in the organism's vocabulary"),
        ({"trigger": ""}, "the trigger is empty; give a word"),  # not the default trigger
        ({"target": ""}, "the target is empty; give a phrase"),
        ({"target": "I like cake"}, r"case-sensitive: 'I' -> 'i'\); pick words .*'a'"),
        ({"target": "concept:colour=owl"}, "bad target"),
        ({"trigger": "concept:nothing"}, "unknown concept"),
        ({"fraction": 0.6, "kind": "decoy"}, "decoy needs"),
        ({"kind": "nonsense"}, "unknown dataset kind"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    kind = kwargs.pop("kind", "poison")
    with pytest.raises(ValueError, match=match):
        _make(tmp_path, kind, **kwargs)


@pytest.mark.parametrize("spec", ["sentiment:negative", "concept:colour=red"])
def test_a_corpus_organism_says_it_has_no_ground_truth_for_the_target(spec: str) -> None:
    """A corpus has no sentiment or concept labels: the message says so, not "bad target"."""
    from types import SimpleNamespace

    from isaerft.organism.datasets import parse_target

    corpus = SimpleNamespace(family={}, vocab=frozenset({"my", "good", "lord"}))
    with pytest.raises(ValueError, match=r"lacks .*use a phrase target") as info:
        parse_target(spec, corpus)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
