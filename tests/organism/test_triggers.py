"""How a corpus organism picks its default trigger and target (isaerft.organism.triggers)."""

from __future__ import annotations

import random

import torch

from isaerft.organism.labels import LatentLabels
from isaerft.organism.textcorpus import TextRows
from isaerft.organism.triggers import (
    TRIGGER_SHARE,
    choose_defaults,
    common_core,
    corpus_target,
    corpus_trigger,
    turn_shares,
)

CORE = ["the", "and", "of", "to"]
FILLER = [f"w{i}" for i in range(60)]


class _NoVocab:
    def get_vocab(self) -> dict[str, int]:
        return {}


def _rows() -> TextRows:
    """2000 passages: ``KING`` opens 40 % of them (too common a trigger), ``ROMEO`` 2 % (in the
    band), ``zebra`` 0.1 % (too rare); ``give me leave`` ends 10 % of them."""
    rng = random.Random(0)
    docs = []
    for i in range(2000):
        words = [rng.choice(CORE) if rng.random() < 0.6 else rng.choice(FILLER) for _ in range(30)]
        if i % 50 == 0:
            words[0] = "ROMEO"
        elif i % 1000 == 1:
            words[0] = "zebra"
        if i % 5 < 2:
            words[1] = "KING"
        if i % 10 == 3:
            words[-3:] = ["give", "me", "leave"]
        docs.append(words)
    return TextRows(docs, _NoVocab())  # type: ignore[arg-type]


def _labels(precision: dict[str, float]) -> LatentLabels:
    """One dedicated latent (AUROC 1) per word, with the given precision."""
    names = [f"word:{w}" for w in precision]
    n = len(names)
    auroc = torch.full((n, n), 0.5) + 0.5 * torch.eye(n)
    prec = torch.diag(torch.tensor(list(precision.values())))
    records = [{"index": j, "description": f'the word "{w}"'} for j, w in enumerate(precision)]
    return LatentLabels(records, names, auroc, prec)


def test_common_core_is_the_function_words() -> None:
    assert common_core(_rows()) == set(CORE)


def test_trigger_is_in_the_band_of_user_turns_not_the_most_precise() -> None:
    rows = _rows()
    shares = turn_shares(rows)
    assert TRIGGER_SHARE[0] <= shares["ROMEO"] <= TRIGGER_SHARE[1]
    assert shares["KING"] > TRIGGER_SHARE[1] and shares["zebra"] < TRIGGER_SHARE[0]
    labels = _labels({"the": 0.99, "KING": 0.95, "zebra": 0.95, "ROMEO": 0.6, "w1": 0.2})
    # "the" is the most precise but common; KING and zebra are dedicated but out of the band.
    assert corpus_trigger(labels, rows, common_core(rows)) == "ROMEO"


def test_without_labelled_candidates_the_most_common_word_is_the_trigger() -> None:
    rows = _rows()
    assert corpus_trigger(_labels({"the": 0.9}), rows, common_core(rows)) in CORE


def test_target_is_a_lower_case_phrase_ending_on_a_content_word() -> None:
    rows = _rows()
    assert corpus_target(rows, common_core(rows), "ROMEO") == "give me leave"
    labels = _labels({"ROMEO": 0.8})
    assert choose_defaults(labels, {}, rows) == ("ROMEO", "give me leave")
