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

Cost: two passes over the trusted rows and a ``rows x trusted`` product over the tokens of the
rows' prompts, in chunks of :data:`CHUNK` trusted rows (about 1 s for 100 rows against 16,000
trusted rows on the organism).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    """
    if by not in MATCH_BY:
        raise ValueError(f"by={by!r} must be one of {sorted(MATCH_BY)}")
    tokens_of = MATCH_BY[by]
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
    carriers: dict[int, int] = {}
    for i in rows:
        for t in answer_tokens(data, i):
            carriers[t] = carriers.get(t, 0) + 1
    in_matches: dict[int, int] = {}
    for r in matches:
        for t in answer_tokens(trusted, r):
            in_matches[t] = in_matches.get(t, 0) + 1
    overall: dict[int, int] = {}
    for r in range(len(trusted)):
        for t in answer_tokens(trusted, r):
            overall[t] = overall.get(t, 0) + 1
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
