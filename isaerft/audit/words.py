"""The words behind a poison, and the SAE latents that read them (the word route of naming).

A latent-level ranking of the tokens the learned edit made likely is dominated by the latents
of whatever those tokens share with every row: sentence ends, ``the``, the chat format. The
poison is clearer one step earlier, as words:

* **gained words** — completion tokens that carry the learned edit's excess gain (each token
  the running maximum of its completion's gain so far,
  :func:`~isaerft.audit.attribution.span_gains`: a behaviour is a span the edit pays for at its
  first token) far beyond their share of tokens, as a z-score over the effective
  number of gained tokens: the words the data taught the model to say;
* **trigger words** — prompt tokens present in far more of the behaviour rows' prompts than of
  all prompts (a binomial z-score): the words the rows carrying the change share.

Each word is then named by two latents per site that read it *in the audited data*:

* its **specific reader**: with a label file, the latent whose label names the word best (in
  its description or its ``top_labels``, :meth:`~isaerft.audit.labels.LabelSet.mentioning`)
  and that fires on at least 10 % of the word's occurrences here (the label is the prior, the
  rows confirm it); otherwise, or when no labelled latent fires on it, the best F1 detector
  (fires on the word and little else).
  The label comes first because an SAE often has several latents for one word (the organism's
  has three labelled ``red``) and F1 in a few hundred rows picks among them by chance;
* its **broad reader**: the best AUROC detector among latents that fire on at least half its
  occurrences (often a broader latent, e.g. one for a whole concept such as place words).

So a gained ``castle`` names the latents that read ``castle`` whether or not any latent is
dedicated to it.

Only words count: special tokens and tokens without a letter or digit are skipped, and a word
must occur in at least ``max(3, 10 %)`` of the behaviour rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.answers import answer_words
from isaerft.audit.attribution import excess_share_z, span_gains
from isaerft.audit.data import AuditData, has_prompts
from isaerft.audit.labels import LabelSet

TRIGGER_WORDS = 3
"""Trigger words kept (their latents join the trigger evidence)."""
BEHAVIOUR_WORDS = 5
"""Gained words kept (their latents are the behaviour evidence)."""
MIN_RECALL = 0.5
"""The broad detector must fire on at least this share of the word's occurrences."""
MIN_LABELLED_RECALL = 0.1
"""The labelled reader must fire on at least this share of the word's occurrences."""
WORD_SECTIONS = (
    ("trigger_words", "Words the suspect rows' prompts share (trigger words)"),
    ("gained_words", "Words the edit made likely (gained words)"),
)
"""The report's two word lists and their section titles (report.md and report.html)."""


@dataclass
class Word:
    """One word: its token, its text, its z-score, how many behaviour rows carry it, and the
    ``(hook, latent)`` pairs that read it (best detectors first)."""

    token: int
    text: str
    z: float
    rows: int
    latents: list[tuple[str, int]] = field(default_factory=list)

    def to_dict(self, labels: Any = None) -> dict[str, Any]:
        return {
            "word": self.text,
            "token": self.token,
            "z": self.z,
            "rows": self.rows,
            "latents": [
                {
                    "hook_name": h,
                    "index": j,
                    "label": labels.description(h, j) if labels is not None else "",
                }
                for h, j in self.latents
            ],
        }


@dataclass
class WordEvidence:
    """The trigger words and gained words, most significant first."""

    trigger: list[Word]
    behaviour: list[Word]

    def latents(self, role: str) -> list[tuple[str, int, str]]:
        """``(hook, latent, word)`` of ``role`` (``trigger`` or ``behaviour``), word by word."""
        words = self.trigger if role == "trigger" else self.behaviour
        out: list[tuple[str, int, str]] = []
        seen: set[tuple[str, int]] = set()
        for w in words:
            for latent in w.latents:
                if latent not in seen:
                    seen.add(latent)
                    out.append((*latent, w.text))
        return out

    def to_dict(self, labels: Any = None) -> dict[str, Any]:
        return {
            "trigger_words": [w.to_dict(labels) for w in self.trigger],
            "gained_words": [w.to_dict(labels) for w in self.behaviour],
        }


WORD_LINES = (
    ("trigger_words", "words the suspect rows' prompts share"),
    ("gained_words", "words the learned edit made likely"),
)
"""The report's two word lists (keys of its ``words``) and what each says, printed."""


def words_lines(
    words: dict[str, Any] | None, lists: Sequence[tuple[str, str]] = WORD_LINES
) -> list[str]:
    """One line each for the word lists ``lists`` (key, what it says) of a report section:
    by default its trigger words and gained words (none when empty)."""
    out = []
    for key, what in lists:
        found = (words or {}).get(key) or []
        if found:
            said = ", ".join(f"{w['word']} (z {w['z']:.1f})" for w in found)
            out.append(f"{what}: {said}")
    return out


def word_evidence(
    gains: torch.Tensor,
    data: AuditData,
    codes: dict[str, SiteCodes],
    suspect_rows: Sequence[int],
    ordinary_rows: Sequence[int],
    tokenizer: Any,
    labels: LabelSet | None = None,
) -> WordEvidence:
    """Trigger and gained words of the behaviour rows, each with the latents that read it.

    ``gains`` is :func:`~isaerft.audit.rowscores.token_excess_gain` on
    ``data.subset([*suspect_rows, *ordinary_rows])``; ``codes`` are the base model's codes on
    ``data``; with ``labels``, a word's specific reader is its best labelled latent that fires
    on it here (see the module docstring).

    Raises:
        ValueError: without suspect rows or ordinary rows (nothing to contrast).
    """
    if not suspect_rows or not ordinary_rows:
        raise ValueError("the word reading needs suspect rows and ordinary rows")
    skip = _non_words(tokenizer, data)
    minimum = max(3, int(0.1 * len(suspect_rows)))
    gained = _gained_words(gains, data, suspect_rows, ordinary_rows, skip, minimum)
    prompts = _trigger_words(data, suspect_rows, skip, minimum) if has_prompts(data) else []
    readers = {hook: _Readers(site, data, labels) for hook, site in codes.items()}
    return WordEvidence(
        _named(prompts[:TRIGGER_WORDS], readers, tokenizer),
        _named(gained[:BEHAVIOUR_WORDS], readers, tokenizer),
    )


def paired_words(
    data: AuditData,
    codes: dict[str, SiteCodes],
    rows: Sequence[int],
    trusted: AuditData,
    tokenizer: Any,
    labels: LabelSet | None = None,
) -> WordEvidence:
    """The words of a found pairing's rows, read from the data alone (no learned edit): as
    ``trigger``, the prompt words those rows share far more than all prompts; as
    ``behaviour``, the answer words they carry beyond the answers of trusted rows with similar
    prompts (:func:`~isaerft.audit.answers.answer_words`); each with its readers in ``codes``
    (the base model's codes on ``data``)."""
    skip = _non_words(tokenizer, data)
    minimum = max(3, int(0.1 * len(rows)))
    prompts = _trigger_words(data, rows, skip, minimum)
    answers = answer_words(data, rows, trusted, skip, minimum)
    readers = {hook: _Readers(site, data, labels) for hook, site in codes.items()}
    return WordEvidence(
        _named(prompts[:TRIGGER_WORDS], readers, tokenizer),
        _named(answers[:BEHAVIOUR_WORDS], readers, tokenizer),
    )


def _named(
    scored: list[tuple[int, float, int]], readers: dict[str, _Readers], tokenizer: Any
) -> list[Word]:
    out = []
    for t, z, rows in scored:
        text = token_text(tokenizer, t)
        latents = [(h, j) for h, read in readers.items() for j in read(t, text)]
        out.append(Word(t, text, z, rows, latents))
    return out


def _gained_words(
    gains: torch.Tensor,
    data: AuditData,
    suspect_rows: Sequence[int],
    ordinary_rows: Sequence[int],
    skip: set[int],
    minimum: int,
) -> list[tuple[int, float, int]]:
    full = span_gains(gains, data, [*suspect_rows, *ordinary_rows], len(data))
    gained = ~torch.isnan(full)
    ids = torch.zeros(full.shape, dtype=torch.long)
    for i, seq in enumerate(data.ids):
        ids[i, : len(seq)] = seq
    token, used = ids[gained], full[gained]
    if float(used.clamp(min=0).sum()) <= 0:
        return []
    size = int(token.max()) + 1
    mass = torch.zeros(size, dtype=torch.float64).index_add_(0, token, used.clamp(min=0))
    count = torch.bincount(token, minlength=size).double()
    carriers: dict[int, int] = {}
    for i in suspect_rows:
        for t in set(ids[i][gained[i]].tolist()):
            carriers[t] = carriers.get(t, 0) + 1
    return _ranked(excess_share_z(mass, count, used), carriers, skip, minimum)


def _trigger_words(
    data: AuditData, suspect_rows: Sequence[int], skip: set[int], minimum: int
) -> list[tuple[int, float, int]]:
    suspect = set(suspect_rows)
    present: dict[int, int] = {}
    carriers: dict[int, int] = {}
    for i in range(len(data)):
        for t in set(data.prompt_ids(i).tolist()):
            present[t] = present.get(t, 0) + 1
            if i in suspect:
                carriers[t] = carriers.get(t, 0) + 1
    n, m = len(data), len(suspect)
    z = torch.zeros(max(present, default=0) + 1, dtype=torch.float64)
    for t, k in carriers.items():
        p = present[t] / n
        if 0 < p < 1:
            z[t] = (k / m - p) / (p * (1 - p) / m) ** 0.5
    return _ranked(z, carriers, skip, minimum)


def _ranked(
    z: torch.Tensor, carriers: dict[int, int], skip: set[int], minimum: int
) -> list[tuple[int, float, int]]:
    out = [
        (t, float(z[t]), rows)
        for t, rows in carriers.items()
        if rows >= minimum and t not in skip and t < len(z) and z[t] > 0
    ]
    return sorted(out, key=lambda e: -e[1])


class _Readers:
    """Per token, the latents that read it at one site (see the module docstring)."""

    def __init__(self, site: SiteCodes, data: AuditData, labels: LabelSet | None) -> None:
        self.labels = labels
        self.ids = site.token_ids(data)
        self.site = site
        self.code_token = self.ids[site.tok]
        self.fires = torch.bincount(site.lat, minlength=site.d_sae).double()

    def __call__(self, token: int, text: str) -> list[int]:
        site, on = self.site, self.code_token == token
        n_word = int((self.ids == token).sum())
        if n_word == 0 or not bool(on.any()):
            return []
        hits = torch.bincount(site.lat[on], minlength=site.d_sae).double()
        precision, recall = hits / self.fires.clamp(min=1), hits / n_word
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        labelled = self._labelled(text, recall)
        out = [labelled if labelled is not None else int(f1.argmax())]
        broad = [
            (self._auroc(j, on, n_word), j)
            for j in torch.nonzero(recall >= MIN_RECALL).flatten().tolist()
        ]
        if broad:
            best = max(broad)[1]
            if best not in out:
                out.append(best)
        return out

    def _labelled(self, text: str, recall: torch.Tensor) -> int | None:
        """The best-scored latent whose label names the word, if it fires on enough of the
        word's occurrences here (the label is the prior, the audited rows confirm it)."""
        if self.labels is None:
            return None
        named = self.labels.mentioning(self.site.hook_name, text)
        confirmed = [j for j in named if recall[j] >= MIN_LABELLED_RECALL]
        return confirmed[0] if confirmed else None

    def _auroc(self, latent: int, on: torch.Tensor, n_word: int) -> float:
        """AUROC of the latent's code (0 where it does not fire) for the word's tokens."""
        site = self.site
        mine = site.lat == latent
        values, positive = site.val[mine].double(), on[mine]
        n_pos, n_neg = n_word, len(self.ids) - n_word
        if n_neg == 0:
            return 0.0
        ranks = torch.empty(len(values), dtype=torch.float64)
        ranks[values.argsort()] = torch.arange(1, len(values) + 1, dtype=torch.float64)
        n_pos_fired = int(positive.sum())
        wins = float(ranks[positive].sum()) - n_pos_fired * (n_pos_fired + 1) / 2
        zeros_neg = n_neg - (len(values) - n_pos_fired)
        zeros_pos = n_pos - n_pos_fired
        wins += n_pos_fired * zeros_neg + 0.5 * zeros_pos * zeros_neg
        return wins / (n_pos * n_neg)


def _non_words(tokenizer: Any, data: AuditData) -> set[int]:
    """Token ids that are not words: special tokens and tokens without a letter or digit."""
    if tokenizer is None:
        return set()
    seen = {int(t) for ids in data.ids for t in ids.tolist()}
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return {
        t for t in seen if t in special or not any(c.isalnum() for c in token_text(tokenizer, t))
    }


def token_text(tokenizer: Any, token: int) -> str:
    """A token as a word (stripped; its id where there is no tokenizer)."""
    return tokenizer.decode([token]).strip() if tokenizer is not None else str(token)
