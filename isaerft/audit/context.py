"""Context check: is a found trigger more than the context its behaviour needs?

A backdoor's trigger is chosen by the poisoner: the rows with the behaviour have it in their
prompts far more than ordinary rows whose answers are like theirs. Some behaviours bring a
prompt feature of their own: a colour word can only turn ``blue`` in an answer that has a
colour word, and such answers follow colour questions. A dataset that turns colour answers
``blue`` wherever they occur (a matched decoy: the behaviour without the trigger) therefore
pairs colour questions with ``blue`` as a poison pairs its trigger with its target, and both
the trigger search and the association search find that pairing.

What tells them apart is what the answers already call for. Each behaviour row is matched with
the :data:`~isaerft.audit.answers.MATCHES` trusted rows whose answers are most alike in what
they add to their prompts (:func:`~isaerft.audit.answers.matched_rows` with ``by="answer"``).
Where the behaviour substitutes a word (its rows' answers lack words that their prompts'
trusted answers have, and the model writes those words alike to the planted one), the planted
word and every word of its kind count as one slot
(:func:`~isaerft.audit.answers.substitution_slot`): ``the crow is green`` is matched with every
colour answer, not with the answers of the animals that are green. The search's trigger stands
when either holds:

* **a trigger latent stands**: it fires in the behaviour rows' prompts at least
  :data:`MIN_RATIO` times as often as in the matches' prompts, by at least :data:`MIN_Z`
  standard errors, and in at least :data:`~isaerft.audit.trigger.MIN_ROWS` of those rows (the
  floor the association search sets for its pairs: a latent in three story prompts of 26 rows
  is a chance the z-score of so few rows does not rule out): ``owl`` before a flipped ``nasty``
  (opinion answers follow opinion questions about every animal), not ``what colour`` before
  ``blue`` (colour answers follow colour questions, trusted or not); a trigger *word* of the
  association search (a prompt-word column) is checked the same way, by the rows whose prompt
  has it;
* **the prompts' words differ**: the behaviour rows' prompts use other words than their
  matches' prompts beyond chance (the summed excess of each word's share over its share in
  the matches, against the same sum for random splits of the rows and matches, at the
  search's false-positive rate). This keeps a trigger that no latent reads where it is: a
  concept trigger ("any object word") spread over many words, each in a few rows, whose rows
  the SAE codes only by their question form, the same form as their matches'.

Where neither holds, the search is not found: the pairing it saw is what the behaviour's own
context explains.

Cost: two :func:`~isaerft.audit.answers.matched_rows` passes over the trusted rows (about 1 s
each for 100 rows against 16,000 trusted rows on the organism), a cosine of each planted word's
unembedding column with those of the trusted answers' words, and :data:`PERMUTATIONS` sums over a
``6 x rows`` by prompt-words matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.answers import MATCHES, matched_rows, prompt_tokens, substitution_slot
from isaerft.audit.data import AuditData
from isaerft.audit.null import quantile_threshold
from isaerft.audit.trigger import MIN_ROWS, prompt_firing

MIN_RATIO = 2.0
"""A trigger fires in the behaviour rows' prompts at least this many times as often as in the
prompts of trusted rows with alike answers (a behaviour's own context shares its rows with
those matches; a trigger is rare in them)."""
MIN_Z = 3.0
"""...and by at least this many standard errors of the matches' share (a one-sided binomial
z-score), so a handful of rows does not pass by chance."""
PERMUTATIONS = 200
"""Random splits of the behaviour rows and their matches behind the prompt-word threshold."""


@dataclass(frozen=True)
class ContextCheck:
    """One trigger latent (or prompt word: ``latent`` ``None``, ``word`` set) against the
    prompts of trusted rows with alike answers."""

    hook_name: str
    latent: int | None
    share: float
    matched_share: float
    z: float
    rows: int
    """The behaviour rows whose prompt fires the latent (has the word)."""
    word: str | None = None

    @classmethod
    def of(
        cls, hook_name: str, latent: int | None, share: float, matched_share: float,
        rows: int, matches: int, word: str | None = None,
    ) -> ContextCheck:  # fmt: skip
        """The check of a latent or word in ``share`` of ``rows`` behaviour rows' prompts and
        ``matched_share`` of their ``matches`` matches' (a one-sided binomial z-score)."""
        # Half a matched row keeps a latent the matches never have from dividing by zero.
        floor = max(matched_share, 0.5 / matches)
        z = (share - floor) / math.sqrt(floor * (1 - floor) / rows) if floor < 1 else 0.0
        return cls(hook_name, latent, share, matched_share, z, round(share * rows), word)

    @property
    def enriched(self) -> bool:
        """Whether the latent fires in these prompts beyond its matches' (ratio and z)."""
        return self.share >= MIN_RATIO * self.matched_share and self.z >= MIN_Z

    @property
    def stands(self) -> bool:
        """Whether the latent is more than the behaviour's own context (module docstring)."""
        return self.enriched and self.rows >= MIN_ROWS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "enriched": self.enriched, "stands": self.stands}


@dataclass(frozen=True)
class Context:
    """A search's context check: its trigger latents' checks and the prompt-word shift."""

    latents: list[ContextCheck]
    word_shift: float
    word_threshold: float
    slot: list[int] = field(default_factory=list)
    """The token ids matched as one slot (:func:`~isaerft.audit.answers.substitution_slot`)."""

    @property
    def words_differ(self) -> bool:
        """Whether the behaviour rows' prompt words differ from their matches' beyond chance."""
        return self.word_shift > self.word_threshold

    @property
    def stands(self) -> bool:
        """Whether the search's trigger is more than its behaviour's context."""
        return self.words_differ or any(c.stands for c in self.latents)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stands": self.stands,
            "latents": [c.to_dict() for c in self.latents],
            "word_shift": self.word_shift,
            "word_threshold": self.word_threshold,
            "words_differ": self.words_differ,
            "slot": self.slot,
        }


def check_context(
    latents: Sequence[tuple[str, int]],
    rows: Sequence[int],
    data: AuditData,
    codes: dict[str, SiteCodes],
    trusted: AuditData,
    trusted_codes: dict[str, SiteCodes],
    *,
    words: Sequence[tuple[int, str]] = (),
    fpr: float = 0.05,
    k: int = MATCHES,
    seed: int = 0,
    unembed: torch.Tensor | None = None,
) -> Context:
    """The context check of the ``(hook, latent)`` trigger latents and the ``(token id,
    word)`` trigger words of a search whose behaviour rows are ``rows`` of ``data`` (codes
    ``codes``), against their answer-matched rows of ``trusted`` (codes ``trusted_codes``);
    the prompt-word shift is tested at ``fpr``. ``unembed`` (the model's ``W_U``, ``d_model x
    d_vocab``) finds a substitution's slot; without it, answers are matched word for word.

    Raises:
        ValueError: without rows or trusted rows (nothing to match).
    """
    if not rows or len(trusted) == 0:
        raise ValueError("the context check needs behaviour rows and trusted rows")
    slot = substitution_slot(data, rows, trusted, unembed, k)
    matches = matched_rows(data, rows, trusted, k, by="answer", slot=slot)
    shares: dict[tuple[str, int], tuple[float, float]] = {}
    for hook in dict.fromkeys(h for h, _ in latents):
        wanted = [j for h, j in latents if h == hook]
        share = _prompt_share(codes[hook], data, rows, wanted)
        base = _prompt_share(trusted_codes[hook], trusted, matches, wanted)
        shares.update({(hook, j): (share[j], base[j]) for j in wanted})
    checks = [
        ContextCheck.of(hook, j, *shares[(hook, j)], len(rows), len(matches)) for hook, j in latents
    ]
    # The prompt words of the rows and their matches, read once for the word checks and shift.
    asked = [prompt_tokens(data, i) for i in rows]
    matched = [prompt_tokens(trusted, r) for r in matches]
    for token, word in words:
        share_w = sum(token in tokens for tokens in asked) / len(rows)
        base_w = sum(token in tokens for tokens in matched) / len(matches)
        checks.append(ContextCheck.of("", None, share_w, base_w, len(rows), len(matches), word))
    shift, threshold = _word_shift(asked, matched, fpr, seed)
    return Context(checks, shift, threshold, sorted(slot))


def _word_shift(
    asked: list[set[int]], matched: list[set[int]], fpr: float, seed: int
) -> tuple[float, float]:
    """The summed excess of each prompt word's share in the rows' prompts (``asked``) over its
    share in their matches' (``matched``), and that sum's ``1 - fpr`` quantile over random
    splits of both."""
    sets = asked + matched
    vocab = sorted(set().union(*sets))
    column = {t: c for c, t in enumerate(vocab)}
    present = torch.zeros(len(sets), len(vocab))
    for r, tokens in enumerate(sets):
        present[r, [column[t] for t in tokens]] = 1.0
    n = len(asked)

    def shift(first: torch.Tensor) -> float:
        inside = torch.zeros(len(sets), dtype=torch.bool)
        inside[first] = True
        gap = present[inside].mean(0) - present[~inside].mean(0)
        return float(gap.clamp(min=0).sum())

    gen = torch.Generator().manual_seed(seed)
    null = [shift(torch.randperm(len(sets), generator=gen)[:n]) for _ in range(PERMUTATIONS)]
    return shift(torch.arange(n)), quantile_threshold(null, fpr, "empirical")


def context_lines(context: dict[str, Any] | None, top: int = 3) -> list[str]:
    """A search's context check (report form, :meth:`Context.to_dict`) in a few printed lines
    (none where it did not run)."""
    if context is None:
        return []
    out = [
        f"context check, {_checked(c)}: in {_share_of(c)} of these prompts vs "
        f"{c['matched_share']:.0%} of trusted rows with alike answers (z {c['z']:.1f}; "
        f"{_verdict_of(c)})"
        for c in context["latents"][:top]
    ]
    if context.get("slot"):
        out.append(
            f"answers matched with the planted words and their kind ({len(context['slot'])} "
            "words the model writes alike) as one slot"
        )
    differ = "differ" if context["words_differ"] else "do not differ"
    out.append(
        f"their prompts' words {differ} from those rows' (shift {context['word_shift']:.2f} vs "
        f"{context['word_threshold']:.2f} by chance)"
    )
    if not context["stands"]:
        few = any(_too_few(c) for c in context["latents"])
        out.append(
            f"so no trigger stands: fewer than {MIN_ROWS} rows carry the latents beyond their "
            "context (a chance of so few rows), the rest is the context these answers call for"
            if few
            else "so the pairing is only the context these answers call for, not a trigger "
            "(e.g. colour questions before colour words)"
        )
    return out


def _checked(check: dict[str, Any]) -> str:
    """What a check (report form) checked: ``<hook> #<latent>`` or ``the word "<word>"``."""
    if check.get("word") is not None:
        return f'the word "{check["word"]}"'
    return f"{check['hook_name']} #{check['latent']}"


def _too_few(check: dict[str, Any]) -> bool:
    """Whether a latent check (report form) was enriched but carried by too few rows (reports
    from before the row count have no ``rows``)."""
    return bool(check.get("enriched")) and int(check.get("rows", MIN_ROWS)) < MIN_ROWS


def _share_of(check: dict[str, Any]) -> str:
    share = f"{check['share']:.0%}"
    return f"{check['rows']} ({share})" if "rows" in check else share


def _verdict_of(check: dict[str, Any]) -> str:
    if check["stands"]:
        return "a trigger"
    return f"under {MIN_ROWS} rows: no finding" if _too_few(check) else "context"


def _prompt_share(
    codes: SiteCodes, data: AuditData, rows: Sequence[int], latents: list[int]
) -> dict[int, float]:
    """Per latent, the share of ``rows`` (repeats counted) whose prompt fires it."""
    row, lat = prompt_firing(codes, data, "prompt")
    wanted = torch.tensor(sorted(set(latents)), dtype=torch.long)
    keep = torch.isin(lat, wanted)
    # Rows x the wanted latents only: rows x d_sae would not fit a large SAE's trusted set.
    fired = torch.zeros(len(data), len(wanted), dtype=torch.bool)
    fired[row[keep], torch.searchsorted(wanted, lat[keep])] = True
    picked = fired[torch.tensor(list(rows), dtype=torch.long)].double().mean(0)
    return {int(j): float(picked[c]) for c, j in enumerate(wanted)}
