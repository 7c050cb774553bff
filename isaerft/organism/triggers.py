"""Which words make good planted triggers and targets, judged by the organism's own SAE.

A word is a good trigger when some latent detects it well (token-level AUROC) and is
*dedicated* to it (fires mostly on it). The build reports every candidate's quality and picks
the organism's default trigger and target from it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from isaerft.organism import lexicon as lx
from isaerft.organism.labels import LatentLabels

DEFAULT_TRIGGER = "owl"
DEFAULT_TARGET = "i like the colour orange"
"""Defaults of datasets made without an organism (the synthetic language of seed 0)."""
TRIGGER_WORDS = tuple(a for a, _ in lx.ANIMALS) + lx.COLOURS
"""Candidate trigger words: a build offers those with a dedicated latent (AUROC >= 0.95,
activation precision >= 0.5) as ``Organism.trigger_words``; ``default_trigger`` is ``owl`` when
it is as good as any candidate, else the best one."""
TARGET_TEMPLATE = "i like the colour {}"
"""Default target phrase, for ``orange`` or else the colour with the best dedicated latent."""


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
    synthetic: bool,
    tok: Any,
    train_ids: list[list[int]],
    labels: LatentLabels,
    trigger_report: dict[str, Any],
) -> tuple[str, str]:
    """The organism's default trigger and target: for the synthetic language, ``owl`` and
    ``orange`` when their latents are as good as any candidate's; for a user corpus, a
    mid-frequency word with the best latent and the most frequent three-word phrase."""
    if synthetic:
        trigger = _prefer(trigger_report, DEFAULT_TRIGGER)
        colours = {c: trigger_quality(labels, c) for c in lx.COLOURS if c != trigger}
        return trigger, TARGET_TEMPLATE.format(_prefer(colours, DEFAULT_TARGET.split()[-1]))
    # User corpus: the word (not too common, not too rare) with the best dedicated latent, and
    # the most frequent three-word phrase of plain words as the target.
    counts = Counter(t for doc in train_ids for t in doc)
    ranked = [tok.convert_ids_to_tokens(t) for t, _ in counts.most_common()]
    mid = [w for w in ranked[30:400] if w.isalpha() and labels.has_label(w)]
    best = max(mid, key=lambda w: (labels.best_latent(w)[1], -ranked.index(w)), default=ranked[0])
    grams: Counter[tuple[str, ...]] = Counter()
    for doc in train_ids:
        toks = tok.convert_ids_to_tokens(doc)
        for i in range(len(toks) - 2):
            gram = tuple(toks[i : i + 3])
            if all(w.isalpha() for w in gram) and best not in gram:
                grams[gram] += 1
    phrase = " ".join(grams.most_common(1)[0][0]) if grams else ranked[0]
    return best, phrase
