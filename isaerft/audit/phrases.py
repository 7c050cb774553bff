"""The learned edit's behaviour as text: the phrases it made likely in the suspect rows.

Per completion token the edit has an excess gain (its log-probability minus the reference
runs', :func:`isaerft.audit.rowscores.token_excess_gain`). A backdoor's behaviour starts
where that gain peaks: the first word of an appended sentence, the flipped word, the
substituted concept. Later words of the behaviour often need no gain (once the model has said
"you", "should visit the castle" follows), so the phrase runs from the peak to the end of its
sentence. Counting those phrases over the suspect rows names the behaviour in words, the way a
reader would describe it, independent of how specific any one SAE latent is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from isaerft.audit.data import AuditData

SENTENCE_ENDS = frozenset({".", "!", "?"})
MAX_PHRASE_TOKENS = 8
MIN_PEAK_GAIN = 1.0
"""Nats: a row whose largest excess gain is below this taught nothing phrase-like."""


@dataclass(frozen=True)
class GainedPhrase:
    """One phrase the edit made likely: its text, how many suspect rows carry it, and the
    mean excess gain (nats) at its first token."""

    text: str
    rows: int
    mean_peak_gain: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "rows": self.rows, "mean_peak_gain": self.mean_peak_gain}


def gained_phrases(
    gains: torch.Tensor,
    data: AuditData,
    rows: Sequence[int],
    tokenizer: Any,
    top: int = 5,
) -> list[GainedPhrase]:
    """The ``top`` most common gained phrases over ``rows``.

    Args:
        gains: ``(len(rows), max_len)`` excess gain per token of ``data.subset(rows)``, at
            each token's own position (as
            :func:`~isaerft.audit.rowscores.token_excess_gain` returns).
        data: the dataset the rows index.
        rows: the suspect rows.
        tokenizer: turns token ids back into text.
    """
    found: dict[str, list[float]] = defaultdict(list)
    for k, i in enumerate(rows):
        ids = data.ids[i].tolist()
        start, stop = max(1, data.prompt_lengths[i]), len(ids)
        if stop <= start:
            continue
        peak = start + int(torch.argmax(gains[k, start:stop]))
        value = float(gains[k, peak])
        if value < MIN_PEAK_GAIN:
            continue
        end = peak
        tokens = tokenizer.convert_ids_to_tokens(ids[peak : min(stop, peak + MAX_PHRASE_TOKENS)])
        for n, token in enumerate(tokens):
            if token == getattr(tokenizer, "eos_token", None):
                break
            end = peak + n + 1
            if token.strip() in SENTENCE_ENDS:
                break
        text = tokenizer.decode(ids[peak:end]).strip()
        if text:
            found[text].append(value)
    ranked = sorted(found.items(), key=lambda kv: (-len(kv[1]), -sum(kv[1])))
    return [GainedPhrase(t, len(v), sum(v) / len(v)) for t, v in ranked[:top]]
