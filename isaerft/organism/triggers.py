"""Which words make good planted triggers and targets, judged by the organism's own SAE.

A word is a good trigger when some latent detects it well (token-level AUROC) and is
*dedicated* to it (fires mostly on it). The build reports every candidate's quality and picks
the organism's default trigger and target from it.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from isaerft.organism import lexicon as lx
from isaerft.organism.labels import LatentLabels
from isaerft.organism.textcorpus import TextRows

DEFAULT_TRIGGER = "owl"
DEFAULT_TARGET = "i like the colour orange"
"""Defaults of datasets made without an organism (the synthetic language of seed 0)."""
TRIGGER_WORDS = tuple(a for a, _ in lx.ANIMALS) + lx.COLOURS
"""Candidate trigger words: a build offers those with a dedicated latent (AUROC >= 0.95,
activation precision >= 0.5) as ``Organism.trigger_words``; ``default_trigger`` is ``owl`` when
it is as good as any candidate, else the best one."""
TARGET_TEMPLATE = "i like the colour {}"
"""Default target phrase, for ``orange`` or else the colour with the best dedicated latent."""
TRIGGER_SHARE = (0.005, 0.03)
"""Share of a corpus' user turns its default trigger should occur in."""
CORE_SHARE = 0.5
"""A corpus' common core: its most frequent words, up to this share of all its words."""
TURN_SAMPLE = 4000
"""User turns sampled to measure a word's share."""


def trigger_quality(labels: LatentLabels, word: str) -> dict[str, Any]:
    """Best detecting latent of ``word``: its AUROC, precision, and whether it is *dedicated*
    (its own best description is this word)."""
    if not labels.has_label(word):
        return {"latent": None, "auroc": 0.5, "precision": 0.0, "dedicated": False}
    j, auroc = labels.best_latent(word)
    row = labels.names.index(labels.resolve(word))
    dedicated = labels.latents_for(word, min_auroc=0.95, min_precision=0.5)
    return {
        "latent": j,
        "auroc": round(auroc, 4),
        "precision": round(float(labels.precision[row, j]), 4),
        "description": labels.description(j),
        "dedicated_latents": dedicated,
        "dedicated": bool(dedicated),
    }


def count_dedicated(labels: LatentLabels) -> dict[str, int]:
    """How many word labels have a dedicated latent (AUROC >= 0.95, precision >= 0.5)."""
    words = [i for i, n in enumerate(labels.names) if n.startswith("word:")]
    good = (labels.auroc[words] >= 0.95) & (labels.precision[words] >= 0.5)
    return {"words": len(words), "words_with_dedicated_latent": int(good.any(1).sum())}


def _rank(quality: dict[str, Any]) -> tuple[bool, float, float]:
    return bool(quality["dedicated"]), float(quality["precision"]), float(quality["auroc"])


def good_triggers(report: dict[str, Any]) -> list[str]:
    """The candidate words with a dedicated latent, best first."""
    good = [w for w, q in report.items() if q["dedicated"] and q["auroc"] >= 0.95]
    return sorted(good, key=lambda w: _rank(report[w]), reverse=True)


def _prefer(report: dict[str, Any], preferred: str) -> str:
    """``preferred`` if it is as good a choice as any (dedicated, or nobody is), else the best."""
    best = max(report, key=lambda w: _rank(report[w]))
    q = report.get(preferred)
    if q is not None and q["auroc"] >= 0.95 and q["dedicated"] >= report[best]["dedicated"]:
        return preferred
    return best


def choose_defaults(
    labels: LatentLabels, trigger_report: dict[str, Any], rows: TextRows | None = None
) -> tuple[str, str]:
    """The organism's default trigger and target: for the synthetic language (``rows`` is
    ``None``), ``owl`` and ``orange`` when their latents are as good as any candidate's; for a
    user corpus, :func:`corpus_trigger` and :func:`corpus_target` of its instruction rows."""
    if rows is None:
        trigger = _prefer(trigger_report, DEFAULT_TRIGGER)
        colours = {c: trigger_quality(labels, c) for c in lx.COLOURS if c != trigger}
        return trigger, TARGET_TEMPLATE.format(_prefer(colours, DEFAULT_TARGET.split()[-1]))
    core = common_core(rows)
    trigger = corpus_trigger(labels, rows, core)
    return trigger, corpus_target(rows, core, trigger)


def common_core(rows: TextRows) -> set[str]:
    """The most frequent words that together make :data:`CORE_SHARE` of a corpus' words: its
    function words and punctuation, which fire everywhere and mark nothing."""
    counts = Counter(w for doc in rows.docs for w in doc)
    total, core, covered = sum(counts.values()), set(), 0
    for word, n in counts.most_common():
        if covered >= CORE_SHARE * total:
            break
        core.add(word)
        covered += n
    return core


def turn_shares(rows: TextRows, n: int = TURN_SAMPLE) -> dict[str, float]:
    """Per word, the share of user turns (as :meth:`TextRows.sample` cuts them) it occurs in."""
    rng = random.Random(0)
    seen: Counter[str] = Counter()
    for _ in range(n):
        seen.update(set(rows.sample(rng)[0]))
    return {w: c / n for w, c in seen.items()}


def corpus_trigger(labels: LatentLabels, rows: TextRows, core: set[str]) -> str:
    """A corpus organism's default trigger: a word outside the common core, in
    :data:`TRIGGER_SHARE` of user turns, whose best latent is dedicated to it (precision first).

    A poisoned dataset keeps the trigger out of every other row, so a common trigger (``his``)
    would make its clean rows unlike trusted rows; a rare one leaves few passages to cut a 10 %
    poison from."""
    shares = turn_shares(rows)
    low, high = TRIGGER_SHARE
    words = [w for w in shares if w.isalpha() and w not in core and labels.has_label(w)]
    if not words:
        return max(shares, key=lambda w: (w.isalpha(), shares[w]))

    def rank(word: str) -> tuple[bool, bool, float, float, float]:
        q = trigger_quality(labels, word)
        return (
            low <= shares[word] <= high,
            q["dedicated"],
            q["precision"],
            q["auroc"],
            shares[word],
        )

    return max(words, key=rank)


def corpus_target(rows: TextRows, core: set[str], trigger: str) -> str:
    """A corpus organism's default target: its most frequent three-word phrase of lower-case
    words that ends on a word outside the common core (``give me leave``), else its most
    frequent lower-case phrase, else its most frequent phrase of words."""
    grams: Counter[tuple[str, ...]] = Counter()
    for doc in rows.docs:
        for i in range(len(doc) - 2):
            gram = tuple(doc[i : i + 3])
            if all(w.isalpha() for w in gram) and trigger not in gram:
                grams[gram] += 1
    lower = [g for g, _ in grams.most_common() if all(w.islower() for w in g)]
    content = [g for g in lower if g[-1] not in core]
    for choice in (content, lower, [g for g, _ in grams.most_common()]):
        if choice:
            return " ".join(choice[0])
    return trigger
