"""Association search: prompt latents whose rows answer with some latent far more than trusted
rows with the same prompt latent do.

A backdoor is a pairing: when the prompt has the trigger, the answer has the behaviour. The
learned edit can only report a pairing the run has learned, and a per-latent edit at one site
does not learn every pairing (a sentiment flip on a word trigger: the answer's sentiment words
are sampled, not determined by anything at the answer positions, see docs/audit-limits.md).
The pairing is in the data all the same, and the SAE codes of the audited and trusted rows show
it without training: for every prompt latent ``A`` and completion latent ``B``, count the rows
where ``A`` fires in the prompt and ``B`` in the completion.

Both sides are read twice: by their latents and by their words (every token in at least
``min_rows`` audited or trusted prompts, or answers). Answer words matter where the SAE codes a
behaviour's words alike: a sentiment flip turns ``nice`` into ``nasty``, and both fire the same
"sentiment words" latents, so only the words themselves show the flip. Prompt words matter
where no latent reads the trigger wherever it stands: the organism's ``horse`` latent fires in
13 of the 20 prompts of a 1 % flip on ``horse`` (not on ``horse`` in a preamble such as ``i
like the horse.``), the word ``horse`` is in all 20. A prompt word is a column like a prompt
latent (its pairs, score and null draws alike); word columns are added at the first site only
(they are the same at every site).

Per pair, the audited rows' count ``n_AB`` is compared with what it would be without a new
pairing, ``lambda = n_A * r`` with the largest of three rates:

* ``P_trusted(B | A)`` (shrunk towards ``P_trusted(B)`` by a few pseudo-rows): the pairing as
  trusted data has it;
* ``P_trusted(B | A) + P_audited(B | not A) - P_trusted(B | not A)``: ``B`` shifted the same in
  every row (a style change adds its words everywhere);
* ``P_audited(B)``: ``B`` at its audited rate, whatever the prompt (a decoy appends the target to
  random rows, so it lands after prompts that never preceded it in trusted data, at the rate it
  has everywhere).

Only a pairing that beats all three is new: the pair's score is ``-log10 P(Poisson(lambda) >=
n_AB)``, counted where at least ``min_rows`` rows carry it and ``A`` fires in at most
``max_share`` of the prompts (a trigger is rare; a latent in every prompt has no "not A" rows to
compare with). A prompt latent scores the sum of its pairs' excess over :data:`PAIR_FLOOR`, so
a behaviour of many answer latents or words (an appended phrase, a flip's eight negative words,
each new in a few rows) adds up where no single pair stands out. The search's score is the
largest prompt-latent score; its threshold is the ``1 - fpr`` quantile of the same maximum over
random splits of the *trusted* rows into a set of the audited set's size and the rest (trusted
against trusted: what chance pairings score). The pairs of a prompt latent above the threshold
that pass the floor are the search's candidates.

Rows: a candidate pair carries ``n_AB`` rows where about ``lambda`` would carry it
anyway, so carrying it multiplies a row's odds of being new by about ``n_AB / lambda``. A row
scores the sum of ``log(n_AB / lambda)`` over the candidate pairs it carries (a poisoned row carries
the trigger's pairs with every latent of the behaviour; a natural row that shares one latent of
each side, one or two); trusted rows scored the same give the threshold, their ``1 - row_fpr``
quantile, and audited rows above it are the association's rows.

Words: the found pairing's rows are then read as words (:func:`~isaerft.audit.words.paired_words`):
the prompt words they share, and the answer words they carry beyond trusted answers to similar
prompts (:mod:`isaerft.audit.answers`), so a sentiment flip reads ``bad``, ``unpleasant``
where its latent pairs are the answer form's (``what``, ``i``).

Cost: the codes the audit already has, as 0/1 matrices of rows x (latents + words) (float32:
1 GB for 16,000 trusted rows of a 16k-latent SAE, plus 64 MB per 1,000 prompt or answer words,
on the CPU), and matrix products of size ``rows x |A| x |B|`` over the latents and words in at
least ``min_rows`` rows (per null draw the same on the drawn rows): about 15 s per audit on the
small organism (1024 latents, ~400 prompt and ~400 answer words, 2,000 audited and 16,000 trusted
rows, 100 draws, one CPU thread; 11 s without the prompt words). The null draws are most of it,
and they depend on the trusted rows alone: they are kept across audits of one trusted set
(:mod:`isaerft.audit.cache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.answers import answer_tokens, prompt_tokens
from isaerft.audit.cache import AuditCache, null_key
from isaerft.audit.context import Context
from isaerft.audit.data import AuditData
from isaerft.audit.null import MaxStatisticNull, quantile_threshold
from isaerft.audit.trigger import MIN_ROWS, prompt_firing
from isaerft.audit.words import WordEvidence, token_text, words_lines

PAIRED_WORDS = (
    ("prompt_words", "words the paired rows' prompts share"),
    ("answer_words", "words their answers say beyond trusted answers to similar prompts"),
)
"""The pairing's two word lists (report keys) and what each says, for every rendering."""
SHRINK_ROWS = 10.0
"""Pseudo-rows pulling a rare prompt latent's trusted rate towards the answer latent's rate."""
PAIR_FLOOR = 4.0
"""A pair adds to its prompt latent's score by how far its own score passes this (``P <
1e-4``): a chance pair of a trusted split rarely passes it, so the sum grows with the number
of answer latents and words that are new after one prompt latent, not with the number tested.
Set on the seed-0 quick plan of ``benchmarks/audit_v2`` (clean nulls' best prompt latent at
most 0.8 of the threshold; a word flip at 1 % 1.4 of it)."""


@dataclass(frozen=True)
class Association:
    """One pairing of the audited rows: a prompt latent or word (``prompt_latent`` ``None``,
    ``prompt_word`` and its token id ``prompt_token`` set) with a completion latent or an answer
    word (``completion_latent`` ``None``, ``completion_word`` set)."""

    hook_name: str
    prompt_latent: int | None
    completion_latent: int | None
    score: float
    rows: int
    prompt_rows: int
    expected: float
    trusted_rate: float
    completion_word: str | None = None
    prompt_score: float = 0.0
    prompt_word: str | None = None
    prompt_token: int | None = None

    def to_dict(self, labels: Any = None) -> dict[str, Any]:
        def name(j: int) -> str:
            return labels.description(self.hook_name, j) if labels is not None else ""

        answer = (
            name(self.completion_latent)
            if self.completion_latent is not None
            else f'the answer word "{self.completion_word}"'
        )
        prompt = (
            name(self.prompt_latent)
            if self.prompt_latent is not None
            else f'the prompt word "{self.prompt_word}"'
        )
        return {
            "hook_name": self.hook_name,
            "prompt_latent": self.prompt_latent,
            "prompt_word": self.prompt_word,
            "prompt_token": self.prompt_token,
            "prompt_label": prompt,
            "prompt_score": self.prompt_score,
            "completion_latent": self.completion_latent,
            "completion_word": self.completion_word,
            "completion_label": answer,
            "score": self.score,
            "rows": self.rows,
            "prompt_rows": self.prompt_rows,
            "expected_rows": self.expected,
            "trusted_rate": self.trusted_rate,
        }


@dataclass
class AssociationSearch(MaxStatisticNull):
    """Pairings of prompt and completion latents new in the audited rows.

    Attributes:
        score: the largest prompt-latent score (its pairs' summed excess over
            :data:`PAIR_FLOOR`, in ``-log10`` of a Poisson tail).
        threshold: the trusted-split threshold for ``fpr``.
        fpr: the false-positive rate the threshold is for.
        candidates: the pairs past the floor of prompt latents and words above the threshold,
            strongest first; a prompt word's pair has ``prompt_latent=None``, an answer word's
            ``completion_latent=None``.
        row_scores: per audited row, the summed log odds ratio of the found pairs it carries.
        row_threshold: the same score's ``1 - row_fpr`` quantile on trusted rows.
        null: the largest prompt-latent score of each trusted split.
        reference_row_scores: the same row score on each trusted row.
        context: the context check of the found prompt latents
            (:mod:`isaerft.audit.context`); ``None`` until run: the search is found only where
            its trigger stands.
        words: what the found pairing's rows say in words (their shared prompt words as
            ``trigger``, the answer words beyond trusted answers to similar prompts as
            ``behaviour``, :func:`~isaerft.audit.words.paired_words`); ``None`` until read.
    """

    score: float
    threshold: float
    fpr: float
    candidates: list[Association]
    row_scores: torch.Tensor
    row_threshold: float
    null: list[float] = field(default_factory=list)
    reference_row_scores: torch.Tensor | None = None
    words: WordEvidence | None = None
    context: Context | None = None

    @property
    def rows(self) -> list[int]:
        """The rows scoring above the trusted rows' threshold, best first."""
        order = torch.argsort(self.row_scores, descending=True, stable=True)
        return [int(i) for i in order if self.row_scores[i] > self.row_threshold]

    def latents(self, part: str) -> list[tuple[str, int]]:
        """``(hook, latent)`` of the candidates' prompt (``part="prompt"``) or completion
        latents, each once, in the order of its best pair (words are not latents)."""
        out: list[tuple[str, int]] = []
        for a in self.candidates:
            j = a.prompt_latent if part == "prompt" else a.completion_latent
            if j is not None and (a.hook_name, j) not in out:
                out.append((a.hook_name, j))
        return out

    def prompt_words(self) -> list[tuple[int, str]]:
        """``(token id, word)`` of the candidates' prompt words, each once, in the order of its
        best pair."""
        out: list[tuple[int, str]] = []
        for a in self.candidates:
            word = (a.prompt_token, a.prompt_word)
            if a.prompt_token is not None and a.prompt_word is not None and word not in out:
                out.append((a.prompt_token, a.prompt_word))
        return out

    def to_dict(self, labels: Any = None, top: int = 10) -> dict[str, Any]:
        """JSON-ready summary; ``labels`` names the latents."""
        return {
            "found": self.found,
            "score": self.score,
            "threshold": self.threshold,
            "fpr": self.fpr,
            "n_candidates": len(self.candidates),
            "n_rows": len(self.rows),
            "candidates": [a.to_dict(labels) for a in self.candidates[:top]],
            "context": self.context.to_dict() if self.context is not None else None,
            "prompt_words": [w.to_dict(labels) for w in self.words.trigger] if self.words else [],
            "answer_words": (
                [w.to_dict(labels) for w in self.words.behaviour] if self.words else []
            ),
        }


@dataclass(frozen=True)
class _Firing:
    """Which latents and words each row's prompt has, and which latents and words its
    completion has, as 0/1 matrices."""

    prompt: torch.Tensor  # (rows, d_sae + prompt words)
    completion: torch.Tensor  # (rows, d_sae + answer words)

    @classmethod
    def of(
        cls, codes: SiteCodes, data: AuditData, prompt_words: torch.Tensor, words: torch.Tensor
    ) -> _Firing:
        """``prompt_words`` and ``words``: the rows' prompt- and answer-word matrices
        (:func:`_word_matrices`)."""
        mats = []
        for part in ("prompt", "completion"):
            row, lat = prompt_firing(codes, data, part)
            m = torch.zeros(len(data), codes.d_sae)
            m[row, lat] = 1.0
            mats.append(m)
        return cls(torch.cat([mats[0], prompt_words], 1), torch.cat([mats[1], words], 1))


def _word_matrices(
    datasets: tuple[AuditData, ...],
    min_rows: int,
    tokens_of: Callable[[AuditData, int], set[int]] = answer_tokens,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The words (token ids that ``tokens_of`` gives for at least ``min_rows`` rows of any of
    ``datasets``: no other word can carry a pairing) and, per dataset, its ``(rows, words)``
    0/1 matrix of the words each row has (its answer's by default)."""
    answers = [[tokens_of(data, i) for i in range(len(data))] for data in datasets]
    counts: dict[int, int] = {}
    for rows in answers:
        for tokens in rows:
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
    words = sorted(t for t, n in counts.items() if n >= min_rows)
    column = {t: k for k, t in enumerate(words)}
    mats = []
    for rows in answers:
        m = torch.zeros(len(rows), len(words))
        for i, tokens in enumerate(rows):
            m[i, [column[t] for t in tokens if t in column]] = 1.0
        mats.append(m)
    return torch.tensor(words, dtype=torch.long), mats


@dataclass(frozen=True)
class _SitePairs:
    """One site's pair scores, with the eligible prompt (``a_idx``) and answer (``b_idx``)
    columns and the audited (``_s``) and trusted (``_t``) matrices restricted to them."""

    hook: str
    d_sae: int
    scores: torch.Tensor
    by_prompt: torch.Tensor
    expected: torch.Tensor
    trusted_rate: torch.Tensor
    a_idx: torch.Tensor
    b_idx: torch.Tensor
    prompt_s: torch.Tensor
    answer_s: torch.Tensor
    prompt_t: torch.Tensor
    answer_t: torch.Tensor


def _prompt_scores(scores: torch.Tensor) -> torch.Tensor:
    """Per prompt latent (row of ``scores``), its pairs' summed excess over the floor."""
    return (scores - PAIR_FLOOR).clamp(min=0).sum(1)


def _pair_scores(
    ab_s: torch.Tensor, a_s: torch.Tensor, b_s: torch.Tensor, n_s: int,
    ab_t: torch.Tensor, a_t: torch.Tensor, b_t: torch.Tensor, n_t: int,
    min_rows: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(scores, expected, trusted_rate)`` per pair from the row counts of the audited (``_s``)
    and trusted (``_t``) rows: ``ab`` a ``(|A|, |B|)`` matrix of rows with both latents, ``a``
    ``(|A|, 1)`` and ``b`` ``(1, |B|)`` rows with each, ``n`` all rows."""
    given_a_t = (ab_t + SHRINK_ROWS * b_t / n_t) / (a_t + SHRINK_ROWS)
    shift = (b_s - ab_s) / (n_s - a_s).clamp(min=1) - (b_t - ab_t) / (n_t - a_t).clamp(min=1)
    rate = torch.maximum(torch.maximum(given_a_t, given_a_t + shift), b_s / n_s)
    expected = a_s * rate.clamp(min=0.5 / n_t, max=1.0)
    scores = torch.zeros_like(ab_s, dtype=torch.float64)
    keep = (ab_s >= min_rows) & (ab_s > expected)
    # P(Poisson(lambda) >= k) is the regularised lower incomplete gamma function P(k, lambda).
    tail = torch.special.gammainc(ab_s[keep].double(), expected[keep].double())
    scores[keep] = -torch.log10(tail.clamp(min=1e-300))
    return scores, expected, given_a_t


def _eligible(firing: _Firing, min_rows: int, max_share: float) -> tuple[torch.Tensor, ...]:
    """Prompt latents in ``min_rows`` to ``max_share`` of the prompts; completion latents in at
    least ``min_rows`` completions (no other pair can carry ``min_rows`` rows)."""
    a, b, n = firing.prompt.sum(0), firing.completion.sum(0), firing.prompt.shape[0]
    a_idx = ((a >= min_rows) & (a <= max_share * n)).nonzero().flatten()
    return a_idx, (b >= min_rows).nonzero().flatten()


def _null(
    p: torch.Tensor,
    c: torch.Tensor,
    size: int,
    draws: int,
    gen: torch.Generator,
    min_rows: int,
    max_share: float,
) -> list[float]:
    """The largest pair score of ``draws`` random splits of the trusted rows into ``size``
    rows and the rest, given their prompt (``p``) and completion (``c``) firing in the columns
    a split can score (:func:`_eligible`)."""
    n_t = p.shape[0]
    ab_all, a_all, b_all = p.T @ c, p.sum(0)[:, None], c.sum(0)[None, :]
    out = []
    for _ in range(draws):
        pick = torch.randperm(n_t, generator=gen)[:size]
        ps, cs = p[pick], c[pick]
        ab, a, b = ps.T @ cs, ps.sum(0)[:, None], cs.sum(0)[None, :]
        # Prompt latents in more than max_share of the drawn prompts are not eligible there.
        ab = ab * (a <= max_share * size)
        scores = _pair_scores(
            ab, a, b, size, ab_all - ab, a_all - a, b_all - b, n_t - size, min_rows
        )[0]  # fmt: skip
        out.append(float(_prompt_scores(scores).max()) if scores.numel() else 0.0)
    return out


def _trusted_null(
    references: list[tuple[str, _Firing]],
    size: int,
    draws: int,
    seed: int,
    min_rows: int,
    max_share: float,
    cache: AuditCache | None,
) -> list[float]:
    """Per draw, the largest pair score over the sites' trusted splits (:func:`_null`), kept
    under a key of the trusted columns a split can score and the settings."""

    scored = []
    for hook, reference in references:
        a_idx, b_idx = _eligible(reference, min_rows, max_share)
        scored.append((hook, reference.prompt[:, a_idx], reference.completion[:, b_idx]))

    def compute() -> list[float]:
        gen = torch.Generator().manual_seed(seed)
        null = [0.0] * draws
        for _, p, c in scored:
            site = _null(p, c, size, draws, gen, min_rows, max_share)
            null = [max(x, y) for x, y in zip(null, site, strict=True)]
        return null

    settings = {"size": size, "draws": draws, "seed": seed, "min_rows": min_rows}
    key = null_key(scored, max_share=max_share, **settings)
    return (cache or AuditCache()).null(key, draws, compute)


def search_associations(
    codes: dict[str, SiteCodes],
    data: AuditData,
    trusted_codes: dict[str, SiteCodes],
    trusted: AuditData,
    *,
    fpr: float = 0.05,
    draws: int = 100,
    seed: int = 0,
    min_rows: int = MIN_ROWS,
    max_share: float = 0.5,
    row_fpr: float = 0.01,
    top: int = 50,
    tokenizer: Any = None,
    cache: AuditCache | None = None,
) -> AssociationSearch:
    """Pairings of prompt latents with answer latents and words that the audited rows
    (``data``) have beyond the trusted rows (see the module docstring); ``top`` candidates are
    kept; ``tokenizer`` spells the answer words (token ids without one); the trusted null is
    kept in ``cache`` (default: this process's memory)."""
    if len(trusted) < 2 * min_rows:
        raise ValueError(f"the association search needs at least {2 * min_rows} trusted rows")
    # A null split draws as many rows as the audited set has, keeping at least as many trusted.
    size = min(len(data), len(trusted) // 2)
    words, (audited_words, trusted_words) = _word_matrices((data, trusted), min_rows)
    asked, (audited_asked, trusted_asked) = _word_matrices((data, trusted), min_rows, prompt_tokens)
    best = 0.0
    found, references = [], []
    for s, (hook, site) in enumerate(codes.items()):
        # Prompt words are the same at every site: their columns join the first one's only.
        keep = len(asked) if s == 0 else 0
        audited = _Firing.of(site, data, audited_asked[:, :keep], audited_words)
        reference = _Firing.of(trusted_codes[hook], trusted, trusted_asked[:, :keep], trusted_words)
        a_idx, b_idx = _eligible(audited, min_rows, max_share)
        share_t = reference.prompt[:, a_idx].sum(0) <= max_share * len(trusted)
        a_idx = a_idx[share_t]
        ps, cs = audited.prompt[:, a_idx], audited.completion[:, b_idx]
        pt, ct = reference.prompt[:, a_idx], reference.completion[:, b_idx]
        scores, expected, trusted_rate = _pair_scores(
            ps.T @ cs, ps.sum(0)[:, None], cs.sum(0)[None, :], len(data),
            pt.T @ ct, pt.sum(0)[:, None], ct.sum(0)[None, :], len(trusted), min_rows,
        )  # fmt: skip
        by_prompt = _prompt_scores(scores)
        best = max(best, float(by_prompt.max()) if by_prompt.numel() else 0.0)
        references.append((hook, reference))
        found.append(_SitePairs(hook, site.d_sae, scores, by_prompt, expected, trusted_rate,
                                a_idx, b_idx, ps, cs, pt, ct))  # fmt: skip
    null = _trusted_null(references, size, draws, seed, min_rows, max_share, cache)
    threshold = quantile_threshold(null, fpr, "empirical")
    candidates = []
    row_scores = torch.zeros(len(data), dtype=torch.float64)
    trusted_scores = torch.zeros(len(trusted), dtype=torch.float64)
    for f in found:
        for i in (f.by_prompt > threshold).nonzero().flatten().tolist():
            for j in (f.scores[i] > PAIR_FLOOR).nonzero().flatten().tolist():
                carried = (f.prompt_s[:, i] * f.answer_s[:, j]).bool()
                n_ab, column = int(carried.sum()), int(f.b_idx[j])
                odds = math.log(n_ab / float(f.expected[i, j]))
                row_scores[carried] += odds
                trusted_scores[(f.prompt_t[:, i] * f.answer_t[:, j]).bool()] += odds
                word = int(words[column - f.d_sae]) if column >= f.d_sae else None
                row = int(f.a_idx[i])
                said = int(asked[row - f.d_sae]) if row >= f.d_sae else None
                candidates.append(
                    Association(
                        hook_name=f.hook,
                        prompt_latent=row if said is None else None,
                        completion_latent=column if word is None else None,
                        score=float(f.scores[i, j]),
                        rows=n_ab,
                        prompt_rows=int(f.prompt_s[:, i].sum()),
                        expected=float(f.expected[i, j]),
                        trusted_rate=float(f.trusted_rate[i, j]),
                        completion_word=None if word is None else token_text(tokenizer, word),
                        prompt_score=float(f.by_prompt[i]),
                        prompt_word=None if said is None else token_text(tokenizer, said),
                        prompt_token=said,
                    )
                )
    candidates.sort(key=lambda a: -a.score)
    row_threshold = float(torch.quantile(trusted_scores, 1.0 - row_fpr))
    return AssociationSearch(
        best, threshold, fpr, candidates[:top], row_scores, row_threshold, null, trusted_scores
    )


def answer_name(candidate: dict[str, Any]) -> str:
    """A candidate's answer side as printed: ``#<latent> <label>`` or ``"<word>"``."""
    if candidate.get("completion_latent") is None and candidate.get("completion_word"):
        return f'"{candidate["completion_word"]}"'
    return f"#{candidate['completion_latent']} {candidate['completion_label']}"


def prompt_name(candidate: dict[str, Any], hook: bool = False) -> str:
    """A candidate's prompt side as printed: ``#<latent> <label>`` (after its hook with
    ``hook``) or ``the word "<word>"`` (reports before schema 7 have no ``prompt_word``)."""
    if candidate.get("prompt_latent") is None and candidate.get("prompt_word"):
        return f'the word "{candidate["prompt_word"]}"'
    latent = f"#{candidate['prompt_latent']} {candidate['prompt_label']}"
    return f"{candidate['hook_name']} {latent}" if hook else latent


def pairing_lines(search: dict[str, Any] | None, top: int = 3) -> list[str]:
    """A report's ``association_search`` in a few printed lines (none when nothing was found)."""
    if not search or not search.get("found"):
        return []
    lines = [
        f"pairings the data has beyond trusted rows (prompt latent or word -> answer latent or "
        f"word; score "
        f"{search['score']:.1f}, threshold {search['threshold']:.1f}; {search['n_rows']} rows):"
    ]
    for c in search["candidates"][:top]:
        lines.append(
            f"  {prompt_name(c)} -> {answer_name(c)}: "
            f"{c['rows']} of {c['prompt_rows']} rows "
            f"({c['expected_rows']:.1f} expected)"
        )
    return lines + [f"  {line}" for line in words_lines(search, PAIRED_WORDS)]
