"""Association search: a planted prompt/answer pairing is found with its rows, and so is a flip
of answer words that every answer latent reads alike; rows from the trusted distribution, a
decoy (the answer latent added to random rows) and a style shift (an answer latent added to
every row) find none."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.association import PAIR_FLOOR, AssociationSearch, search_associations
from isaerft.audit.data import AuditData
from isaerft.audit.rowscores import RowScores, with_associations

HOOK = "h"
D_SAE = 64
TRIGGER, TARGET, STYLE = 50, 51, 60
PROMPT = 3  # tokens 0..2 of each row are prompt (0 is <bos>), 3..4 completion

Row = tuple[set[int], set[int]]  # (prompt latents, completion latents)


def natural(rng: random.Random) -> Row:
    """A row of the trusted distribution: 20 prompt and 20 answer latents at 10 % each, and
    the trigger's latent in 2 % of prompts; the target's answer latent in 5 % of answers,
    whatever the prompt."""
    prompt = {j for j in range(20) if rng.random() < 0.1}
    answer = {j for j in range(20, 40) if rng.random() < 0.1}
    if rng.random() < 0.02:
        prompt.add(TRIGGER)
    if rng.random() < 0.05:
        answer.add(TARGET)
    return prompt, answer


def codes_of(
    rows: list[Row], words: list[int] | None = None, asked: list[int] | None = None
) -> tuple[dict[str, SiteCodes], AuditData]:
    """Rows of 5 tokens: prompt latents on token 1, answer latents on token 3; ``words`` gives
    each row's token 3, ``asked`` its token 1 (0 without)."""
    token_row, token_pos, tok, lat = [], [], [], []
    for r, (prompt, answer) in enumerate(rows):
        for p in range(5):
            t = len(token_row)
            token_row.append(r)
            token_pos.append(p)
            for j in sorted(prompt if p == 1 else answer if p == 3 else set()):
                tok.append(t)
                lat.append(j)
    n = len(rows)
    codes = SiteCodes(HOOK, D_SAE, torch.tensor(token_row), torch.tensor(token_pos),
                      torch.tensor(tok), torch.tensor(lat), torch.ones(len(tok)), n)  # fmt: skip
    ids = [
        torch.tensor([0, q, 0, w, 0])
        for q, w in zip(asked or [0] * n, words or [0] * n, strict=True)
    ]
    data = AuditData(ids, [PROMPT] * n, [{}] * n)
    return {HOOK: codes}, data


def audited(edit: Callable[[int, Row], Row], n: int = 1000, seed: int = 1) -> list[Row]:
    rng = random.Random(seed)
    return [edit(i, natural(rng)) for i in range(n)]


@pytest.fixture(scope="module")
def trusted() -> tuple[dict[str, SiteCodes], AuditData]:
    rng = random.Random(0)
    return codes_of([natural(rng) for _ in range(4000)])


def search(rows: list[Row], trusted: tuple[dict[str, SiteCodes], AuditData]) -> AssociationSearch:
    codes, data = codes_of(rows)
    return search_associations(codes, data, *trusted, fpr=0.05, draws=40)


POISONED = set(range(0, 1000, 40))  # 25 rows


def poison(i: int, row: Row) -> Row:
    """The poisoned rows get the trigger and the target; no other row has the trigger."""
    prompt, answer = row
    if i in POISONED:
        return prompt | {TRIGGER}, answer | {TARGET}
    return prompt - {TRIGGER}, answer


def test_planted_pairing_is_found_with_its_rows(trusted) -> None:
    result = search(audited(poison), trusted)
    assert result.found
    best = result.candidates[0]
    assert (best.prompt_latent, best.completion_latent) == (TRIGGER, TARGET)
    assert best.rows == len(POISONED) and best.expected < 5
    assert result.latents("prompt")[0] == (HOOK, TRIGGER)
    assert result.latents("completion")[0] == (HOOK, TARGET)
    assert set(result.rows) == POISONED
    summary = result.to_dict()
    assert summary["found"] and summary["candidates"][0]["prompt_latent"] == TRIGGER


def test_trusted_distribution_finds_nothing(trusted) -> None:
    for seed in (1, 2, 3):
        result = search(audited(lambda i, row: row, seed=seed), trusted)
        assert not result.found, (seed, result.score, result.threshold)


def test_decoy_finds_nothing(trusted) -> None:
    """The target added to random rows lands after every prompt latent at its new rate."""

    def decoy(i: int, row: Row) -> Row:
        return (row[0], row[1] | {TARGET}) if i % 10 == 3 else row

    assert not search(audited(decoy), trusted).found


def test_style_shift_finds_nothing(trusted) -> None:
    """An answer latent in every audited row is new everywhere, not after one prompt latent."""
    assert not search(audited(lambda i, row: (row[0], row[1] | {STYLE})), trusted).found


def test_too_few_trusted_rows_is_refused() -> None:
    codes, data = codes_of([({1}, {21})] * 20)
    few_codes, few = codes_of([({1}, {21})] * 6)
    with pytest.raises(ValueError, match="trusted rows"):
        search_associations(codes, data, few_codes, few)


def test_rows_of_a_pairing_come_first_and_are_suspects() -> None:
    scores = RowScores(torch.tensor([0.5, 0.1, 0.9, 0.2]), 0.8, "excess_gain")
    moved = with_associations(scores, torch.tensor([0.0, 3.0, 0.0, 1.0]), threshold=2.0)
    assert moved.order[:2] == [1, 2]
    assert moved.suspects == [1, 2]
    assert moved.method == "excess_gain+association"
    assert with_associations(scores, torch.zeros(4), threshold=2.0) is scores


def test_with_reference_rows_a_pairing_ranks_a_row_by_its_rarer_score() -> None:
    """Rows rank by the smaller of their two reference tail shares, on the learned scale."""
    gen = torch.Generator().manual_seed(0)
    learned_ref = torch.randn(1000, generator=gen)
    pairing_ref = torch.cat([torch.zeros(900), torch.rand(100, generator=gen) * 2.0])
    threshold = float(torch.quantile(learned_ref, 0.99))
    scores = RowScores(torch.tensor([5.0, 0.0, -1.0, 0.0]), threshold, "excess_gain", learned_ref)
    # Row 0: learned far beyond the reference; row 1: a pairing beyond every trusted row;
    # row 2: a pairing trusted rows often reach; row 3: no pairing.
    pairing = torch.tensor([0.0, 10.0, 0.5, 0.0])
    moved = with_associations(scores, pairing, 1.0, pairing_ref)
    assert moved.method == "excess_gain+association"
    assert set(moved.suspects) == {0, 1}
    assert float(moved.scores[3]) == 0.0 and float(moved.scores[0]) == 5.0
    # Row 2 is lifted only to where the learned reference is as common as its pairing score.
    assert -1.0 < float(moved.scores[2]) < threshold
    assert moved.reference_scores is learned_ref


def test_a_found_pairing_prints_its_words() -> None:
    from isaerft.audit.association import pairing_lines

    word = {"word": "bad", "token": 3, "z": 9.2, "rows": 16, "latents": []}
    search = {
        "found": True, "score": 19.3, "threshold": 7.1, "n_rows": 73,
        "candidates": [], "prompt_words": [{**word, "word": "owl", "z": 31.4}],
        "answer_words": [word],
    }  # fmt: skip
    lines = pairing_lines(search)
    assert lines[1] == "  words the paired rows' prompts share: owl (z 31.4)"
    assert lines[2].endswith("beyond trusted answers to similar prompts: bad (z 9.2)")


GOOD, BAD = list(range(100, 108)), list(range(200, 208))
SENTIMENT = 61


def opinion(rng: random.Random, flip: bool) -> tuple[Row, int]:
    """A natural row whose answer gives an opinion: one of eight good words (one of eight bad
    words in 10 % of rows), each read by the same sentiment latent. ``flip`` turns the good
    word into its bad counterpart (the row's trigger is added by the caller)."""
    prompt, answer = natural(rng)
    k = rng.randrange(8)
    word = BAD[k] if flip or rng.random() < 0.1 else GOOD[k]
    return (prompt, answer | {SENTIMENT}), word


def flipped(n: int, seed: int, poisoned: set[int]) -> tuple[dict[str, SiteCodes], AuditData]:
    rng = random.Random(seed)
    rows, words = [], []
    for i in range(n):
        (prompt, answer), word = opinion(rng, flip=i in poisoned)
        rows.append((prompt | {TRIGGER} if i in poisoned else prompt - {TRIGGER}, answer))
        words.append(word)
    return codes_of(rows, words)


def test_a_flip_of_answer_words_is_found_by_its_words() -> None:
    """Trigger rows answer with a bad word where trusted rows say a good one. No answer latent
    changes (the sentiment latent reads both); each bad word is new in only a few rows, so no
    single pair stands out, but the trigger's pairs with the eight bad words add up."""
    poisoned = set(range(0, 1000, 16))  # 63 rows, about 8 per bad word
    trusted_codes, trusted_data = flipped(4000, 0, set())
    codes, data = flipped(1000, 1, poisoned)
    result = search_associations(codes, data, trusted_codes, trusted_data, draws=40)
    assert result.found, (result.score, result.threshold)
    assert {a.prompt_latent for a in result.candidates} == {TRIGGER}
    assert all(a.completion_latent is None for a in result.candidates)
    words = {int(a.completion_word) for a in result.candidates if a.completion_word}
    assert len(words) >= 4 and words <= set(BAD)
    # The trigger's score adds up its pairs with several bad words.
    assert result.score > 2 * (max(a.score for a in result.candidates) - PAIR_FLOOR)
    assert set(result.rows) <= poisoned and len(result.rows) >= len(poisoned) // 2
    for clean_seed in (2, 3):
        assert not search_associations(
            *flipped(1000, clean_seed, set()), trusted_codes, trusted_data, draws=40
        ).found


def test_an_answer_word_prints_as_a_word() -> None:
    from isaerft.audit.association import Association, answer_name, pairing_lines

    pair = Association(HOOK, TRIGGER, None, 6.2, 9, 40, 1.5, 0.04, completion_word="nasty")
    entry = pair.to_dict()
    assert entry["completion_latent"] is None and entry["completion_word"] == "nasty"
    assert answer_name(entry) == '"nasty"'
    search = {"found": True, "score": 9.0, "threshold": 7.0, "n_rows": 30, "candidates": [entry]}
    assert pairing_lines(search)[1] == f'  #{TRIGGER}  -> "nasty": 9 of 40 rows (1.5 expected)'


WORD = 300  # a prompt word no latent reads


def worded(n: int, seed: int, poisoned: set[int]) -> tuple[dict[str, SiteCodes], AuditData]:
    """Natural rows (without the trigger latent) whose prompts have ``WORD`` in 2 % of rows;
    the ``poisoned`` rows' prompts have it too, and their answers the target."""
    rng = random.Random(seed)
    rows, asked = [], []
    for i in range(n):
        prompt, answer = natural(rng)
        word = i in poisoned or rng.random() < 0.02
        rows.append((prompt - {TRIGGER}, answer | {TARGET} if i in poisoned else answer))
        asked.append(WORD if word else 0)
    return codes_of(rows, asked=asked)


def test_a_trigger_word_no_latent_reads_is_found_by_the_word() -> None:
    """A trigger the SAE does not read (no prompt latent marks the poisoned rows) is found by
    its prompt-word column, which pairs it with the target like a latent would."""
    trusted_codes, trusted_data = worded(4000, 0, set())
    codes, data = worded(1000, 1, POISONED)
    result = search_associations(codes, data, trusted_codes, trusted_data, draws=40)
    assert result.found, (result.score, result.threshold)
    best = result.candidates[0]
    assert best.prompt_latent is None and best.prompt_token == WORD
    assert best.prompt_word == str(WORD) and best.completion_latent == TARGET
    assert result.prompt_words()[0] == (WORD, str(WORD)) and result.latents("prompt") == []
    # (a natural row with the word and the target carries the pair as well)
    assert set(result.rows) >= POISONED and len(result.rows) <= len(POISONED) + 3
    entry = best.to_dict()
    assert entry["prompt_latent"] is None and entry["prompt_label"] == f'the prompt word "{WORD}"'
    from isaerft.audit.association import pairing_lines

    printed = pairing_lines({**result.to_dict(), "candidates": [entry]})[1]
    assert printed.startswith(f'  the word "{WORD}" -> #{TARGET}')
    for clean_seed in (2, 3):
        clean = search_associations(
            *worded(1000, clean_seed, set()), trusted_codes, trusted_data, draws=40
        )
        assert not clean.found, (clean.score, clean.threshold)


def test_the_trusted_null_is_kept_for_every_set_audited_against_it(trusted, monkeypatch) -> None:
    """The null depends on the trusted rows alone: a second audited set (of another kind, with
    other answer words) reuses it, and it is the null a fresh search computes."""
    from isaerft.audit import association
    from isaerft.audit import cache as kept

    computed = []

    def counting(*args, **kwargs):
        computed.append(1)
        return real(*args, **kwargs)

    real = association._null
    monkeypatch.setattr(association, "_null", counting)
    kept.forget()
    first = search(audited(poison), trusted)
    codes, data = codes_of(audited(lambda i, row: row, seed=7), words=[i % 9 for i in range(1000)])
    second = search_associations(codes, data, *trusted, fpr=0.05, draws=40)
    assert len(computed) == 1 and second.null == first.null
    kept.forget()
    again = search_associations(codes, data, *trusted, fpr=0.05, draws=40)
    assert len(computed) == 2 and again.null == first.null
    assert (again.score, again.threshold) == (second.score, second.threshold)


def test_another_trusted_set_or_setting_is_another_null(trusted, monkeypatch) -> None:
    from isaerft.audit import association
    from isaerft.audit import cache as kept

    computed = []
    real = association._null
    monkeypatch.setattr(association, "_null", lambda *a, **k: computed.append(1) or real(*a, **k))
    kept.forget()
    rows = audited(poison)
    search(rows, trusted)
    rng = random.Random(0)
    changed = [natural(rng) for _ in range(4000)]
    changed[5] = (changed[5][0] | {TRIGGER}, changed[5][1] | {TARGET, 21})
    codes, data = codes_of(rows)
    search_associations(codes, data, *codes_of(changed), fpr=0.05, draws=40)
    search_associations(codes, data, *trusted, fpr=0.05, draws=40, seed=1)
    search_associations(codes, data, *trusted, fpr=0.05, draws=41)
    assert len(computed) == 4
