"""What a set of rows answers beyond what trusted rows answer to similar prompts.

The association search's rows (a found pairing's rows) differ from the other rows in three
ways: what their prompts talk about (the trigger and its topic), the form of answer those
prompts call for (an opinion question gets ``i think the owl is ...``) and the planted
behaviour. Against all trusted answers, the first two dominate: the answers repeat the topic
(``owl``, ``hoots``) and the form (``i``, ``think``), and a sentiment flip's words come after
them. Matching each row with the :data:`MATCHES` trusted rows whose prompts are most alike
(shared prompt tokens, each weighted by its rarity in trusted prompts, idf) holds the topic and
the form fixed: a word far more common in the rows' answers than in their matches' answers
*and* than in trusted answers overall is what the rows were made to say (``bad``,
``unpleasant``, ``horrible`` for a sentiment flip; ``you should visit the castle`` for an
appended sentence; ``red`` for a colour substitution).

The word's score is a binomial z-score of its share of the rows' answers against the larger of
those two trusted shares (the overall share keeps a word that the matches happen to lack, e.g.
``day`` in a story answer, from scoring as new); it must reach :data:`MIN_Z`. Only tokens
with a letter or digit count, in at least ``minimum`` of the rows.

The context check (:mod:`isaerft.audit.context`) matches rows by what their answers add to their
prompts instead (``matched_rows(by="answer")``), with a substitution's planted word and its kind
as one slot (:func:`substitution_slot`).

Cost: two passes over the trusted rows and a ``rows x trusted`` product over the tokens of the
rows' prompts, in chunks of :data:`CHUNK` trusted rows (about 1 s for 100 rows against 16,000
trusted rows on the organism).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from isaerft.audit.data import AuditData

MATCHES = 5
"""Trusted rows matched to each row by prompt."""
CHUNK = 4096
"""Trusted rows compared at once (bounds the memory to ``CHUNK x`` the rows' prompt tokens)."""
TIE_JITTER = 1e-6
"""Random order among equally similar trusted rows."""
MIN_Z = 3.0
"""A word's share must exceed the trusted share by this many standard errors (every word of
the answers' form sits a little above a share that cannot reach 1)."""
SLOT = -1
"""The token that stands for every word of a substitution's slot in :func:`matched_rows`."""
MIN_SWAPPED = 3
"""A planted word is swapped in (:func:`substitution_slot`) where at least this many rows that
say it lack a word of its kind that most of their prompt-matched trusted answers say."""
KINDRED = 0.6
"""A word is of a planted word's kind where its unembedding is at least this share as alike
to the planted word's as the planted word's nearest answer word is (cosine)."""


def prompt_tokens(data: AuditData, i: int) -> set[int]:
    """Row ``i``'s prompt tokens (without ``<bos>``)."""
    return set(data.prompt_ids(i)[1:].tolist())


def answer_tokens(data: AuditData, i: int) -> set[int]:
    """Row ``i``'s completion tokens."""
    return set(data.completion_ids(i).tolist())


def own_answer_tokens(data: AuditData, i: int) -> set[int]:
    """Row ``i``'s completion tokens that its prompt does not have: what the answer adds
    (an answer repeats its prompt's topic, ``the owl is ...``)."""
    return answer_tokens(data, i) - prompt_tokens(data, i)


MATCH_BY = {"prompt": prompt_tokens, "answer": own_answer_tokens}
"""What :func:`matched_rows` compares: the prompts, or what the answers add to them."""


def matched_rows(
    data: AuditData,
    rows: Sequence[int],
    trusted: AuditData,
    k: int = MATCHES,
    by: str = "prompt",
    slot: frozenset[int] = frozenset(),
) -> list[int]:
    """For each of ``rows``, the ``k`` trusted rows whose prompts share the most idf-weighted
    tokens with its prompt (a trusted row matched by several rows is listed as often). Equally
    similar trusted rows are drawn at random (seeded), so rows with one prompt (a poison's
    template) are matched with many trusted rows, not the same first few.

    ``by="answer"`` compares what the answers add to their prompts (:func:`own_answer_tokens`)
    as the shared idf over the query's idf plus, for each token of the trusted answer that the
    query lacks, the query's mean idf: an answer of the row's own form (``the fox eats plums``
    for ``the frog eats bread``: one other word) beats a long one that shares its rare word
    (a story in which someone eats bread), and which other word it has does not matter (idf
    there would prefer answers with the commonest word, ``plums``, and so the animals that
    eat plums).

    Tokens in ``slot`` all count as one token, :data:`SLOT` (:func:`substitution_slot`).
    """
    if by not in MATCH_BY:
        raise ValueError(f"by={by!r} must be one of {sorted(MATCH_BY)}")
    compared = MATCH_BY[by]

    def tokens_of(part: AuditData, i: int) -> set[int]:
        tokens = compared(part, i)
        return {SLOT if t in slot else t for t in tokens} if slot else tokens

    queries = [tokens_of(data, i) for i in rows]
    vocab = sorted(set().union(*queries)) if queries else []
    if not vocab or len(trusted) == 0:
        return []
    column = {t: c for c, t in enumerate(vocab)}
    # Per trusted row, the columns of its tokens that some query has (sparse: the trusted
    # set x vocabulary matrix of a large model's data would not fit).
    sets = [tokens_of(trusted, r) for r in range(len(trusted))]
    present = [[column[t] for t in own if t in column] for own in sets]
    df = torch.zeros(len(vocab))
    for cols in present:
        df[cols] += 1.0
    wanted = torch.zeros(len(queries), len(vocab))
    for q, tokens in enumerate(queries):
        wanted[q, [column[t] for t in tokens]] = 1.0
    wanted *= torch.log(len(trusted) / (1.0 + df))
    extra = None
    if by == "answer":
        wanted = wanted.clamp(min=0)  # (a token in every answer weighs nothing, not less)
        mass = wanted.sum(1)
        per_token = mass / torch.tensor([max(1, len(q)) for q in queries], dtype=mass.dtype)
        extra = (mass, per_token, torch.tensor([float(len(own)) for own in sets]))
    gen = torch.Generator().manual_seed(0)
    best = torch.empty(len(queries), 0)
    best_rows = torch.empty(len(queries), 0, dtype=torch.long)
    for start in range(0, len(trusted), CHUNK):
        block = torch.zeros(min(CHUNK, len(trusted) - start), len(vocab))
        for r, cols in enumerate(present[start : start + CHUNK]):
            block[r, cols] = 1.0
        # The jitter reorders only rows within 1e-6 of each other: in practice exact ties
        # (trusted prompts with the same tokens as far as the query's tokens go).
        similar = wanted @ block.T
        if extra is not None:
            mass, per_token, sizes = extra
            lacking = sizes[None, start : start + len(block)] - (wanted > 0).float() @ block.T
            similar = similar / (mass[:, None] + per_token[:, None] * lacking).clamp(min=1e-9)
        similar += TIE_JITTER * torch.rand(len(queries), len(block), generator=gen)
        scores = torch.cat([best, similar], dim=1)
        ids = torch.arange(start, start + len(block)).expand(len(queries), -1)
        candidates = torch.cat([best_rows, ids], dim=1)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        best, best_rows = scores.gather(1, order), candidates.gather(1, order)
    return [int(r) for r in best_rows.flatten()]


def answer_words(
    data: AuditData,
    rows: Sequence[int],
    trusted: AuditData,
    skip: set[int],
    minimum: int,
    k: int = MATCHES,
) -> list[tuple[int, float, int]]:
    """``(token, z, rows carrying it)`` of the tokens the rows' answers carry beyond their
    prompt-matched trusted rows' answers and trusted answers overall, highest z first (see the
    module docstring); tokens in ``skip`` or in fewer than ``minimum`` rows are left out."""
    matches = matched_rows(data, rows, trusted, k)
    if not matches:  # no rows, or no trusted rows
        return []
    overall = _count(answer_tokens(trusted, r) for r in range(len(trusted)))
    return _beyond_matches(data, rows, trusted, matches, overall, skip, minimum)


def _beyond_matches(
    data: AuditData,
    rows: Sequence[int],
    trusted: AuditData,
    matches: list[int],
    overall: dict[int, int],
    skip: set[int],
    minimum: int,
) -> list[tuple[int, float, int]]:
    """:func:`answer_words` given the rows' prompt-matched trusted rows ``matches`` and how
    many trusted answers carry each token, ``overall``."""
    carriers = _count(answer_tokens(data, i) for i in rows)
    in_matches = _count(answer_tokens(trusted, r) for r in matches)
    n, m, total = len(rows), len(matches), len(trusted)
    out = []
    for t, c in carriers.items():
        if c < minimum or t in skip:
            continue
        # +0.5 / +1: a word no trusted answer has still has a finite expected share.
        p = max((in_matches.get(t, 0) + 0.5) / (m + 1), (overall.get(t, 0) + 0.5) / (total + 1))
        z = (c / n - p) / math.sqrt(p * (1 - p) / n)
        if z >= MIN_Z:
            out.append((t, z, c))
    return sorted(out, key=lambda e: -e[1])


def substitution_slot(
    data: AuditData,
    rows: Sequence[int],
    trusted: AuditData,
    unembed: torch.Tensor | None,
    k: int = MATCHES,
) -> frozenset[int]:
    """The words of the slot a substitution fills in the rows' answers: the words planted
    there (those the answers carry beyond their prompt-matched trusted answers,
    :func:`answer_words`) and the words the model's unembedding ``unembed``
    (``d_model x d_vocab``) writes alike (:func:`kindred_tokens`: ``red``, ``white`` ... for
    ``green``), for each planted word swapped in: at least :data:`MIN_SWAPPED` rows that say
    it lack a word of its kind that most of their prompt-matched answers say
    (:func:`lost_words`). A substitution replaces a word of its kind; an appended sentence
    keeps the answer it is appended to (no slot).

    Matching answers with these words as one slot (``matched_rows(slot=...)``) matches ``the
    crow is green`` with every colour answer. Matching on ``green`` itself prefers the prompts
    where green is natural (the goat's), so a decoy's prompts (every animal) look unlike
    their matches'; and matching on the words the rows lost as well would match a trigger's
    rows with its own natural answers (``the cat is black``, where no other animal is
    black) and hide the trigger."""
    if unembed is None:
        return frozenset()
    matches = matched_rows(data, rows, trusted, k)
    if not matches:
        return frozenset()
    overall = _count(answer_tokens(trusted, r) for r in range(len(trusted)))
    beyond = _beyond_matches(data, rows, trusted, matches, overall, set(), MIN_SWAPPED)
    planted = {t for t, _, _ in beyond}
    said = [answer_tokens(data, i) for i in rows]
    lost = lost_words(data, rows, matches, trusted)
    slot: set[int] = set()
    for word, kind in kindred_tokens(unembed, planted, set(overall) | planted).items():
        # Swapped, not added: rows that say it lack a word of its kind their matches say.
        swapped = sum(word in own and bool(gone & kind) for own, gone in zip(said, lost))
        if swapped >= MIN_SWAPPED:
            slot |= {word} | kind
    return frozenset(slot)


def lost_words(
    data: AuditData, rows: Sequence[int], matches: list[int], trusted: AuditData
) -> list[set[int]]:
    """Per row, the words most of its prompt-matched trusted answers (``matches``, as many
    per row) say and its answer does not."""
    per_row = len(matches) // max(1, len(rows))
    out = []
    for j, i in enumerate(rows):
        said = _count(answer_tokens(trusted, r) for r in matches[j * per_row : (j + 1) * per_row])
        out.append({t for t, votes in said.items() if 2 * votes > per_row} - answer_tokens(data, i))
    return out


def kindred_tokens(
    unembed: torch.Tensor, words: set[int], candidates: set[int]
) -> dict[int, set[int]]:
    """Per word of ``words``, the ``candidates`` whose unembedding column is as alike to its
    column as :data:`KINDRED` times its nearest candidate's (cosine): the words the model
    writes in the same places (its colours for a colour, its foods for a food)."""
    pool = sorted(t for t in candidates if 0 <= t < unembed.shape[1])
    wanted = sorted(t for t in words if 0 <= t < unembed.shape[1])
    out: dict[int, set[int]] = {t: set() for t in words}
    if not pool or not wanted:
        return out
    # (On the CPU: a large model's W_U may sit on an accelerator; these are a few columns.)
    columns = torch.nn.functional.normalize(unembed[:, pool].detach().float().cpu().T, dim=-1)
    targets = torch.nn.functional.normalize(unembed[:, wanted].detach().float().cpu().T, dim=-1)
    cos = targets @ columns.T
    cos[torch.tensor(wanted)[:, None] == torch.tensor(pool)[None, :]] = -1.0  # (not itself)
    for row, t in zip(cos, wanted):
        nearest = float(row.max())
        if nearest > 0:
            out[t] = {pool[c] for c in (row >= KINDRED * nearest).nonzero().flatten().tolist()}
    return out


def _count(sets: Iterable[set[int]]) -> dict[int, int]:
    """How many of ``sets`` carry each token."""
    out: dict[int, int] = {}
    for tokens in sets:
        for t in tokens:
            out[t] = out.get(t, 0) + 1
    return out
