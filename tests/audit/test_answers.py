"""What a pairing's rows answer beyond trusted answers to similar prompts."""

from __future__ import annotations

import pytest
import torch
from factories import word_rows, word_tokenizer

from isaerft.audit.answers import (
    answer_words,
    kindred_tokens,
    lost_words,
    matched_rows,
    substitution_slot,
)
from isaerft.audit.data import AuditData

WORDS = ["what", "think", "of", "owl", "cat", "dog", "tell", "story", "i", "it", "is", "good",
         "bad", "day", "once", "ran", "."]  # fmt: skip
TOK = word_tokenizer(WORDS)


def _rows(pairs: list[tuple[str, str]]) -> AuditData:
    return word_rows(TOK, pairs)


OPINION = ("what think of {}", "i think it is {} .")
STORY = ("tell story of {}", "once it ran . day .")


def _trusted() -> AuditData:
    return _rows(_trusted_pairs())


def _trusted_pairs() -> list[tuple[str, str]]:
    # Opinion questions are answered "good" (1 in 10 "bad"); stories never mention good or
    # bad, and "day" is in every story answer.
    pairs = []
    for r in range(200):
        animal = ("cat", "dog")[r % 2]
        if r % 4 < 2:
            pairs.append(
                (OPINION[0].format(animal), OPINION[1].format("bad" if r % 40 > 35 else "good"))
            )
        else:
            pairs.append((STORY[0].format(animal), STORY[1]))
    return pairs


def _owl_rows(n: int = 20) -> AuditData:
    # A sentiment flip on "owl": the opinion answers say "bad"; every answer is otherwise
    # what trusted rows answer (the form "i think it is", the topic "owl" in the prompt).
    return _rows([(OPINION[0].format("owl"), OPINION[1].format("bad")) for _ in range(n)])


def test_rows_match_the_trusted_rows_with_the_most_alike_prompts() -> None:
    trusted = _trusted()
    matches = matched_rows(_owl_rows(3), [0, 1, 2], trusted, k=4)
    assert len(matches) == 12
    # Every match is an opinion question (rows r % 4 < 2), none a story.
    assert all(r % 4 < 2 for r in matches)


def test_the_flipped_word_is_named_and_the_answer_form_is_not() -> None:
    words = answer_words(_owl_rows(), list(range(20)), _trusted(), skip=set(), minimum=3)
    named = [TOK.convert_ids_to_tokens(t) for t, _, _ in words]
    assert named[0] == "bad"
    # The form of an opinion answer is as common in the matched trusted answers.
    assert not {"i", "think", "it", "is"} & set(named)


def test_a_word_the_matches_lack_but_trusted_answers_have_is_not_new() -> None:
    # Half the owl rows also say "day": the matched (opinion) trusted answers never do, but
    # half of all trusted answers do (the stories), so "day" is no more common than usual.
    pairs = [
        (OPINION[0].format("owl"), "i think it is good ." + " day ." * (r % 2)) for r in range(20)
    ]
    words = answer_words(_rows(pairs), list(range(20)), _trusted(), skip=set(), minimum=3)
    assert words == []


def test_no_rows_or_no_trusted_rows_name_nothing() -> None:
    assert answer_words(_owl_rows(), [], _trusted(), skip=set(), minimum=3) == []
    assert answer_words(_owl_rows(), [0, 1], _rows([]), skip=set(), minimum=1) == []


def test_matching_in_chunks_keeps_the_best_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import isaerft.audit.answers as answers

    # The one trusted row about the owl sits in the middle, neither first nor last chunk.
    pairs = _trusted_pairs()
    pairs.insert(100, (OPINION[0].format("owl"), "i think ."))
    monkeypatch.setattr(answers, "CHUNK", 7)
    matches = matched_rows(_owl_rows(2), [0, 1], _rows(pairs), k=3)
    assert len(matches) == 6 and matches[0] == matches[3] == 100
    assert matches.count(100) == 2  # once per row, first


def test_kindred_tokens_are_those_the_unembedding_writes_alike() -> None:
    ids = {w: int(TOK.convert_tokens_to_ids(w)) for w in ("good", "bad", "owl", "cat", "day")}
    weights = 0.01 * torch.randn(8, len(TOK), generator=torch.Generator().manual_seed(0))
    weights[0, [ids["good"], ids["bad"]]] = 1.0
    weights[1, [ids["owl"], ids["cat"]]] = 1.0
    candidates = set(ids.values()) | {len(TOK) + 5}  # (an id beyond the unembedding is skipped)
    kindred = kindred_tokens(weights, {ids["owl"], ids["bad"], len(TOK) + 9}, candidates)
    assert kindred == {ids["bad"]: {ids["good"]}, ids["owl"]: {ids["cat"]}, len(TOK) + 9: set()}
    assert kindred_tokens(weights, set(), candidates) == {}


def test_lost_words_are_those_a_row_lacks_where_most_of_its_matches_say_them() -> None:
    trusted = _trusted()
    # A flipped opinion loses "good"; a story keeps its "day".
    data = _rows([(OPINION[0].format("owl"), OPINION[1].format("bad")), STORY])
    lost = lost_words(data, [0, 1], matched_rows(data, [0, 1], trusted), trusted)
    assert lost == [{int(TOK.convert_tokens_to_ids("good"))}, set()]


def test_only_a_swapped_word_opens_a_slot() -> None:
    trusted, rows = _trusted(), list(range(6))
    good, bad = (int(TOK.convert_tokens_to_ids(w)) for w in ("good", "bad"))
    alike = 0.01 * torch.randn(8, len(TOK), generator=torch.Generator().manual_seed(0))
    alike[0, [good, bad]] = 1.0
    flipped = _rows([(OPINION[0].format("owl"), OPINION[1].format("bad"))] * 6)
    assert substitution_slot(flipped, rows, trusted, alike) == {good, bad}
    assert substitution_slot(flipped, rows, trusted, None) == frozenset()
    # An appended word loses nothing: no slot, whatever the unembedding says.
    appended = _rows([(OPINION[0].format("owl"), "i think it is good . bad .")] * 6)
    assert substitution_slot(appended, rows, trusted, alike) == frozenset()
