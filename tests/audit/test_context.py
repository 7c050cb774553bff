"""Context check: a poison's trigger stands against trusted rows with alike answers; the prompt
that a behaviour's own answers call for (a substitution decoy's colour question) does not."""

from __future__ import annotations

import random

import pytest
import torch
from factories import word_rows, word_tokenizer

from isaerft.audit.activations import SiteCodes
from isaerft.audit.answers import matched_rows
from isaerft.audit.context import MIN_RATIO, Context, ContextCheck, check_context, context_lines
from isaerft.audit.data import AuditData
from isaerft.audit.null import MaxStatisticNull
from isaerft.audit.trigger import MIN_ROWS

WORDS = ["what", "colour", "is", "the", "sky", "sea", "grass", "cow", "pig", "tell", "story",
         "of", "once", "it", "ran", "blue", "green", "red", "grey", "pink", "."]  # fmt: skip
TOK = word_tokenizer(WORDS)
THINGS = ("sky", "sea", "grass", "cow", "pig")
HOOK = "h"


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Colour questions answered with a colour (blue one time in four), and stories."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        thing = rng.choice(THINGS)
        if rng.random() < 0.5:
            colour = rng.choice(("blue", "green", "red", "grey"))
            out.append((f"what colour is the {thing}", f"it {colour} ."))
        else:
            out.append((f"tell story of the {thing}", "once it ran ."))
    return out


def _rows(pairs: list[tuple[str, str]]) -> AuditData:
    return word_rows(TOK, pairs)


def _codes(data: AuditData) -> dict[str, SiteCodes]:
    """An SAE with one latent per token id (the latent of a word is its id)."""
    row = torch.cat([torch.full((len(s),), i) for i, s in enumerate(data.ids)])
    pos = torch.cat([torch.arange(len(s)) for s in data.ids])
    lat = torch.cat(list(data.ids))
    n = len(lat)
    codes = SiteCodes(HOOK, len(TOK), row, pos, torch.arange(n), lat, torch.ones(n), len(data))
    return {HOOK: codes}


def _planted(only: tuple[str, ...] | None) -> tuple[AuditData, list[int]]:
    """Audited rows whose colour answers turn ``blue``: those about ``only`` (a poison with
    those trigger words), or the first 40 colour answers whatever they are about (its decoy)."""
    pairs, rows = _pairs(400, seed=2), []
    for i, (prompt, _) in enumerate(pairs):
        if not prompt.startswith("what"):
            continue
        about = prompt.split()[-1]
        if (only is not None and about in only) or (only is None and len(rows) < 40):
            pairs[i] = (prompt, "it blue .")
            rows.append(i)
    return _rows(pairs), rows


def _check(words: list[str], only: tuple[str, ...] | None) -> Context:
    data, rows = _planted(only)
    trusted = _rows(_pairs(1000, seed=0))
    latents = [(HOOK, int(TOK.convert_tokens_to_ids(w))) for w in words]
    return check_context(latents, rows, data, _codes(data), trusted, _codes(trusted))


def test_a_poisons_trigger_stands_and_the_colour_question_does_not() -> None:
    context = _check(["cow", "colour"], only=("cow",))
    trigger, question = context.latents
    assert trigger.stands and trigger.share == 1.0 and trigger.matched_share < 0.4
    assert trigger.share >= MIN_RATIO * trigger.matched_share
    # Every trusted answer with a colour follows a colour question: no more than context.
    assert not question.stands and question.matched_share == 1.0
    assert question.to_dict()["stands"] is False and trigger.to_dict()["latent"] == trigger.latent
    assert context.stands and context.words_differ


def test_a_trigger_word_is_checked_as_a_latent_is() -> None:
    """The association search's trigger words (prompt-word columns) get the latents' check:
    by the rows whose prompt has the word, against their answer-matched trusted rows."""
    data, rows = _planted(("cow",))
    trusted = _rows(_pairs(1000, seed=0))
    words = [(int(TOK.convert_tokens_to_ids(w)), w) for w in ("cow", "colour")]
    context = check_context([], rows, data, _codes(data), trusted, _codes(trusted), words=words)
    cow, colour = context.latents
    assert cow.word == "cow" and cow.latent is None and cow.stands and cow.share == 1.0
    assert colour.word == "colour" and not colour.stands and colour.matched_share == 1.0
    lines = context_lines(context.to_dict())
    assert lines[0].startswith('context check, the word "cow": in ') and "a trigger" in lines[0]
    # The decoy's colour question, as a word, is its answers' own context.
    data, rows = _planted(None)
    decoy = check_context([], rows, data, _codes(data), trusted, _codes(trusted), words=words[1:])
    assert not decoy.latents[0].stands and not decoy.stands


def test_a_decoys_colour_question_is_its_answers_own_context() -> None:
    context = _check(["colour"], only=None)
    (question,) = context.latents
    assert question.share == 1.0 and not question.stands
    # Its rows ask about what the matches ask about: no word shift either.
    assert not context.words_differ and not context.stands
    assert context.to_dict()["stands"] is False


def test_a_trigger_of_several_words_stands_by_its_prompt_words() -> None:
    # A trigger spread over words ("cow" or "pig") with only the question form as a candidate
    # latent: the latent is context, the rows' prompt words are not their matches'.
    context = _check(["colour"], only=("cow", "pig"))
    assert not context.latents[0].stands
    assert context.words_differ and context.stands
    assert context.word_shift > context.word_threshold


def test_answers_are_matched_on_what_they_add_to_their_prompt() -> None:
    # "cow" in a trusted answer is its prompt's topic repeated: left out of the matching, the
    # matches of a blue answer about a cow are blue answers about anything.
    data = _rows([("what colour is the cow", "it blue cow .")])
    trusted = _rows([("what colour is the cow", "it red cow .")] * 5 + [("what colour is the sky", "it blue .")] * 5)  # fmt: skip
    assert set(matched_rows(data, [0], trusted, k=5, by="answer")) == set(range(5, 10))
    assert set(matched_rows(data, [0], trusted, k=5, by="prompt")) == set(range(5))
    with pytest.raises(ValueError, match="by="):
        matched_rows(data, [0], trusted, by="completion")


def test_answers_of_the_rows_form_beat_long_answers_that_share_its_rare_word() -> None:
    # Shared idf alone would match "it blue ." with the long stories that mention blue; per
    # token the trusted answer has beyond the query, the match costs the query's mean idf.
    data = _rows([("what colour is the cow", "it blue .")])
    words = "once it ran blue sky grass sea red grey green cow pig the of is what colour ."
    story, same_form = ("tell story", words), ("what colour is the sky", "it red .")
    filler = ("tell story of the cow", "once ran .")
    trusted = _rows([story] * 5 + [same_form] * 5 + [filler] * 20)
    assert set(matched_rows(data, [0], trusted, k=5, by="answer")) == set(range(5, 10))


def test_a_search_is_found_only_where_its_trigger_stands() -> None:
    class Search(MaxStatisticNull):
        def __init__(self, context: Context | None) -> None:
            self.score, self.threshold, self.null, self.context = 5.0, 1.0, [], context

    stands, context_only = (
        ContextCheck(HOOK, 1, 1.0, 0.1, 9.0, 20),
        ContextCheck(HOOK, 2, 1.0, 1.0, 0.0, 20),
    )
    assert Search(None).found and Search(Context([context_only, stands], 0.1, 0.5)).found
    assert Search(Context([context_only], 0.9, 0.5)).found  # (the words differ)
    assert not Search(Context([context_only], 0.1, 0.5)).found
    assert not Search(Context([context_only], 0.1, 0.5)).context_stands


def _few(n: int) -> Context:
    """The check of ``cow`` where only the first ``n`` colour answers about a cow turn blue."""
    pairs, rows = _pairs(400, seed=2), []
    for i, (prompt, _) in enumerate(pairs):
        if prompt.startswith("what") and prompt.endswith("cow") and len(rows) < n:
            pairs[i] = (prompt, "it blue .")
            rows.append(i)
    data, trusted = _rows(pairs), _rows(_pairs(1000, seed=0))
    cow = [(HOOK, int(TOK.convert_tokens_to_ids("cow")))]
    return check_context(cow, rows, data, _codes(data), trusted, _codes(trusted))


def test_a_trigger_latent_of_too_few_rows_does_not_stand() -> None:
    # Beyond its matches by ratio and z-score, but in fewer rows than a pairing must carry.
    few, enough = _few(MIN_ROWS - 1), _few(MIN_ROWS)
    assert [c.rows for c in few.latents + enough.latents] == [MIN_ROWS - 1, MIN_ROWS]
    assert few.latents[0].enriched and not few.latents[0].stands
    assert enough.latents[0].enriched and enough.latents[0].stands
    lines = context_lines(few.to_dict())
    assert lines[0].startswith(f"context check, {HOOK} #") and f"in {MIN_ROWS - 1} (" in lines[0]
    assert lines[0].endswith(f"under {MIN_ROWS} rows: no finding)")
    # (Here the prompt words differ all the same; where they do not, the search is not found.)
    alone = context_lines({**few.to_dict(), "words_differ": False, "stands": False})
    assert alone[-1].startswith(f"so no trigger stands: fewer than {MIN_ROWS} rows")
    # A report from before the row count reads as it did.
    old = {k: v for k, v in few.latents[0].to_dict().items() if k not in ("rows", "enriched")}
    assert context_lines({**few.to_dict(), "latents": [old]})[0].endswith("context)")


def test_no_rows_or_no_trusted_rows_are_refused() -> None:
    data, _ = _planted(("cow",))
    with pytest.raises(ValueError, match="behaviour rows and trusted rows"):
        check_context([(HOOK, 7)], [], data, _codes(data), data, _codes(data))


def test_the_report_says_whether_a_candidate_is_a_trigger_or_context() -> None:
    lines = context_lines(_check(["cow", "colour"], only=("cow",)).to_dict())
    assert lines[0].endswith("a trigger)") and lines[1].endswith("context)")
    assert lines[2].startswith("their prompts' words differ") and len(lines) == 3
    decoy = context_lines(_check(["colour"], only=None).to_dict())
    assert "do not differ" in decoy[1] and decoy[2].startswith("so the pairing is only")
    assert context_lines(None) == []


# -- substitutions: answers matched with the planted word's kind as one slot -----------------
FIXED = {"sky": "blue", "sea": "green", "grass": "green", "cow": "red", "pig": "grey"}
COLOURS = ("blue", "green", "red", "grey", "pink")


def _fixed_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Colour questions answered with each thing's own colour (only the sky is blue; only
    the cow is red), and stories."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        thing = rng.choice(THINGS)
        if rng.random() < 0.5:
            out.append((f"what colour is the {thing}", f"it {FIXED[thing]} ."))
        else:
            out.append((f"tell story of the {thing}", "once it ran ."))
    return out


def _unembed() -> torch.Tensor:
    """An unembedding whose colour columns share a direction (the model writes colours in
    the same places) and whose other columns are unalike."""
    gen = torch.Generator().manual_seed(0)
    weights = 0.1 * torch.randn(32, len(TOK), generator=gen)
    for colour in COLOURS:
        weights[0, int(TOK.convert_tokens_to_ids(colour))] += 1.0
    return weights


def _substituted(
    only: tuple[str, ...] | None, unembed: torch.Tensor | None, colour: str = "blue"
) -> Context:
    """The context check of the colour question (and ``only``'s words) where colour answers
    turn ``colour``: about ``only`` (a poison), or the first 40 whatever they are about (a
    decoy), against trusted rows in which each thing has its own colour."""
    pairs, rows = _fixed_pairs(400, seed=2), []
    for i, (prompt, _) in enumerate(pairs):
        about = prompt.split()[-1]
        if prompt.startswith("what") and (
            (only and about in only) or (not only and len(rows) < 40)
        ):
            pairs[i] = (prompt, f"it {colour} .")
            rows.append(i)
    data, trusted = _rows(pairs), _rows(_fixed_pairs(1000, seed=0))
    latents = [(HOOK, int(TOK.convert_tokens_to_ids(w))) for w in ("colour", *(only or ()))]
    return check_context(
        latents, rows, data, _codes(data), trusted, _codes(trusted), unembed=unembed
    )


def test_a_substitution_decoy_is_matched_with_every_answer_of_its_kind() -> None:
    # Matched on "blue" itself, the decoy's rows (about everything) meet only the sky's
    # answers: their prompt words differ, and the decoy would pass for a trigger.
    assert _substituted(None, unembed=None).words_differ
    context = _substituted(None, unembed=_unembed())
    colour_ids = sorted(int(TOK.convert_tokens_to_ids(c)) for c in COLOURS if c != "pink")
    assert context.slot == colour_ids and context.to_dict()["slot"] == colour_ids
    assert not context.words_differ and not context.stands
    assert "as one slot" in context_lines(context.to_dict())[-3]


def test_a_trigger_whose_own_answer_is_unique_still_stands() -> None:
    # The cow is the only red thing and nothing is pink: a slot of the words the rows gained
    # and lost ("pink", "red") would match the cow's rows with the cow's own answers; the
    # slot of the colours the model writes alike matches them with every thing's.
    context = _substituted(("cow",), unembed=_unembed(), colour="pink")
    assert int(TOK.convert_tokens_to_ids("red")) in context.slot and len(context.slot) == 5
    cow = context.latents[1]
    assert cow.stands and cow.matched_share < 0.4 and context.stands
