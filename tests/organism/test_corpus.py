"""The synthetic language: determinism, rendering, ground-truth labels, entropy floor."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from isaerft.organism import lexicon as lx
from isaerft.organism.corpus import SOUND, Language, World, article, chat, render


def test_same_seed_same_documents() -> None:
    a = [d.tokens for d in Language(0).documents(300, "train")]
    b = [d.tokens for d in Language(0).documents(300, "train")]
    c = [d.tokens for d in Language(0).documents(300, "other-stream")]
    assert a == b
    assert a != c


def test_world_depends_on_seed_only() -> None:
    assert World.make(0) == World.make(0)
    assert World.make(0) != World.make(1)
    assert Language(1).world == World.make(1)


def test_every_token_has_ground_truth_concepts() -> None:
    docs = list(Language(0).documents(20_000, "train"))
    tokens = [t for d in docs for t in d.tokens]
    assert all(t in lx.LEXICON.family for t in tokens)
    assert lx.LEXICON.concepts("owl") == ("animal",)
    assert lx.LEXICON.concepts("owls") == ("animal", "plural")
    assert lx.LEXICON.concepts("ran") == ("action", "past")
    assert lx.LEXICON.concepts("terrible") == ("sentiment", "negative")
    assert lx.LEXICON.concepts("no-such-word") == ()
    # A few hundred word types, each used: the vocabulary is the lexicon.
    assert 300 <= len(lx.LEXICON.words) <= 2000
    assert set(tokens) == set(lx.LEXICON.words)


def test_words_are_unique_per_family() -> None:
    assert "owl" in lx.LEXICON.words_of("animal")
    assert "owls" in lx.LEXICON.words_of("plural")
    assert not set(lx.LEXICON.words_of("animal")) & set(lx.LEXICON.words_of("food"))
    assert len(set(SOUND.values())) == len(SOUND)


def test_render_spacing() -> None:
    assert render(["once", "upon", "a", "time", ",", "Anna", "ran", "."]) == (
        "once upon a time, Anna ran."
    )
    assert render(chat(["hello", "!"])) == "User: hello!\nAssistant:"
    assert article("owl") == ["an", "owl"] and article("cat") == ["a", "cat"]


def test_instruction_documents_split_into_prompt_and_completion() -> None:
    docs = [d for d in Language(0).documents(500, "train") if d.kind == "instruction"]
    assert docs
    for d in docs:
        assert d.prompt.startswith("User: ") and d.prompt.endswith("\nAssistant:")
        assert d.completion.startswith(" ") and d.prompt + d.completion == d.text


def test_world_facts_are_consistent() -> None:
    lang = Language(3)
    for d in lang.documents(3000, "train"):
        t = list(d.tokens)
        for i in range(len(t) - 4):
            if (
                t[i] == "the"
                and t[i + 1] in lang.world.colour
                and t[i + 2] == "is"
                and t[i + 3] in lx.COLOURS
            ):
                assert t[i + 3] == lang.world.colour[t[i + 1]]
            if t[i] == "the" and t[i + 1] in SOUND and t[i + 2] in lx.SOUNDS:
                assert t[i + 2] == SOUND[t[i + 1]]


def test_entropy_floor_is_far_below_unigram() -> None:
    docs = list(Language(0).documents(5000, "train"))
    n = sum(len(d.tokens) + 1 for d in docs)
    floor = -sum(d.logp for d in docs) / n
    counts = Counter(t for d in docs for t in d.tokens)
    total = sum(counts.values())
    unigram = -sum(c / total * math.log(c / total) for c in counts.values())
    assert 0.3 < floor < 1.2
    assert unigram > 3 * floor


@pytest.mark.parametrize("kind", ["facts", "story", "instruction"])
def test_all_document_kinds_occur(kind: str) -> None:
    kinds = Counter(d.kind for d in Language(0).documents(400, "train"))
    assert kinds[kind] > 50
