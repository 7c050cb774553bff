"""Trigger search: do the rows that carry the learned change share something in their prompts?

A poison pairs a trigger in the prompt with a behaviour in the answer; a decoy has the same
triggers and behaviours in different rows; a benign style shift has no trigger at all. The
fine-tune's unusual change finds the *behaviour rows* (the most suspect rows); this test asks
whether some SAE latent fires in the prompts of those rows far more often than in the prompts
of the other rows.

Per latent, the enrichment is a one-sided two-proportion z-score of "fires somewhere in the
prompt" between behaviour rows and the rest. The search's score is the largest enrichment; its
threshold for the false-positive rate is the ``1 - fpr`` quantile of the same maximum over
random row sets of the same size (a permutation null). Enriched latents above it are the
trigger candidates, reported with their labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.null import MaxStatisticNull, quantile_threshold

if TYPE_CHECKING:  # only for the annotation: the context check imports this module
    from isaerft.audit.context import Context


@dataclass
class TriggerSearch(MaxStatisticNull):
    """Prompt latents enriched in the behaviour rows.

    Attributes:
        rows: the behaviour rows.
        z: per site, each latent's enrichment z (behaviour rows vs the rest).
        rate_in, rate_out: per site, the fraction of behaviour / other rows whose prompt
            fires the latent.
        score: the largest enrichment.
        threshold: the permutation threshold for ``fpr``.
        candidates: ``(hook, latent, z)`` above the threshold, strongest first.
        part: where the latents were counted, ``prompt`` or ``completion``.
        null: the largest enrichment of each random row set (the permutation null).
        context: the context check of the candidates (:mod:`isaerft.audit.context`);
            ``None`` until run (no trusted rows): the search is found only where its trigger
            stands.
    """

    rows: list[int]
    z: dict[str, torch.Tensor]
    rate_in: dict[str, torch.Tensor]
    rate_out: dict[str, torch.Tensor]
    score: float
    threshold: float
    candidates: list[tuple[str, int, float]]
    part: str = "prompt"
    null: list[float] = field(default_factory=list)
    context: Context | None = None

    def to_dict(self, labels: Any = None, top: int = 10) -> dict[str, Any]:
        """JSON-ready summary; ``labels`` (a :class:`~isaerft.audit.labels.LabelSet`) names
        the candidates."""
        out = []
        for hook, j, z in self.candidates[:top]:
            out.append(
                {
                    "hook_name": hook,
                    "index": j,
                    "z": z,
                    "rate_in_behaviour_rows": float(self.rate_in[hook][j]),
                    "rate_in_other_rows": float(self.rate_out[hook][j]),
                    "label": labels.description(hook, j) if labels is not None else "",
                }
            )
        return {
            "found": self.found,
            "score": self.score,
            "threshold": self.threshold,
            "part": self.part,
            "n_behaviour_rows": len(self.rows),
            "candidates": out,
            "context": self.context.to_dict() if self.context is not None else None,
        }


PARTS = ("prompt", "completion")
MIN_ROWS = 5
"""Rows a pairing or a trigger must carry to count: a pattern of fewer rows is no finding (the
association search's pairs, :mod:`isaerft.audit.association`; the context check's trigger
latents, :mod:`isaerft.audit.context`)."""


def prompt_firing(
    codes: SiteCodes, data: AuditData, part: str = "prompt"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique ``(row, latent)`` pairs where the latent fires in the row's prompt (after
    ``<bos>``), or in its completion with ``part="completion"``."""
    if part not in PARTS:
        raise ValueError(f"part={part!r} must be one of {list(PARTS)}")
    row = codes.token_row[codes.tok]
    pos = codes.token_pos[codes.tok]
    limit = torch.tensor(data.prompt_lengths)[row]
    keep = (pos >= 1) & (pos < limit) if part == "prompt" else pos >= limit
    key = torch.unique(row[keep] * codes.d_sae + codes.lat[keep])
    return key // codes.d_sae, key % codes.d_sae


def _enrichment(
    count_in: torch.Tensor, n_in: int, total: torch.Tensor, n_rows: int
) -> torch.Tensor:
    n_out = n_rows - n_in
    pa, pb = count_in / n_in, (total - count_in) / n_out
    pooled = total / n_rows
    # Half a row of pseudo-count keeps latents that never fire from dividing by zero.
    var = (pooled * (1 - pooled)).clamp(min=0.5 / n_rows) * (1.0 / n_in + 1.0 / n_out)
    return (pa - pb) / var.sqrt()


def search_trigger(
    codes: dict[str, SiteCodes],
    data: AuditData,
    rows: Sequence[int],
    *,
    fpr: float = 0.05,
    permutations: int = 200,
    seed: int = 0,
    part: str = "prompt",
    strata: torch.Tensor | None = None,
) -> TriggerSearch:
    """Look for prompt latents enriched in ``rows`` (the behaviour rows) of ``data``.

    With ``part="completion"`` the same search runs over the completions: it names the
    *behaviour* those rows share (the target), rather than the trigger.

    ``strata`` (one integer per row, e.g. :func:`length_strata`) makes the permutation null
    draw as many rows from each stratum as the behaviour rows have there. Row scores grow with
    completion length, so the most suspect rows lean towards prompts that ask for long answers
    ("tell me a story"); a null matched on length keeps that from passing for a trigger.
    """
    rows = sorted(set(rows))
    n_rows = len(data)
    if not 0 < len(rows) < n_rows:
        raise ValueError(f"the trigger search needs between 1 and {n_rows - 1} behaviour rows")
    if strata is not None and len(strata) != n_rows:
        raise ValueError(f"strata has {len(strata)} entries for {n_rows} rows")
    draw = _sampler(n_rows, rows, strata)
    pairs = {hook: prompt_firing(site, data, part) for hook, site in codes.items()}
    totals = {
        hook: torch.bincount(lat, minlength=codes[hook].d_sae).double()
        for hook, (_, lat) in pairs.items()
    }

    def scores(members: torch.Tensor) -> dict[str, torch.Tensor]:
        inside = torch.zeros(n_rows, dtype=torch.bool)
        inside[members] = True
        out = {}
        for hook, (row, lat) in pairs.items():
            count = torch.bincount(lat[inside[row]], minlength=codes[hook].d_sae).double()
            out[hook] = _enrichment(count, len(members), totals[hook], n_rows)
        return out

    z = scores(torch.tensor(rows))
    gen = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(permutations):
        members = draw(gen)
        null.append(max(float(v.max()) for v in scores(members).values()))
    threshold = quantile_threshold(null, fpr, "empirical")
    score = max(float(v.max()) for v in z.values())
    candidates = sorted(
        (
            (hook, int(j), float(v[j]))
            for hook, v in z.items()
            for j in (v > threshold).nonzero().flatten()
        ),
        key=lambda c: -c[2],
    )
    inside = torch.zeros(n_rows, dtype=torch.bool)
    inside[torch.tensor(rows)] = True
    rate_in, rate_out = {}, {}
    for hook, (row, lat) in pairs.items():
        count = torch.bincount(lat[inside[row]], minlength=codes[hook].d_sae).double()
        rate_in[hook] = count / len(rows)
        rate_out[hook] = (totals[hook] - count) / (n_rows - len(rows))
    return TriggerSearch(rows, z, rate_in, rate_out, score, threshold, candidates, part, null)


def length_strata(data: AuditData, bins: int = 5) -> torch.Tensor:
    """Per row, the quantile bin (``0 .. bins - 1``) of its completion length in tokens."""
    lengths = torch.tensor(
        [len(ids) - p for ids, p in zip(data.ids, data.prompt_lengths, strict=True)],
        dtype=torch.float64,
    )
    edges = torch.quantile(lengths, torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1])
    return torch.bucketize(lengths, edges)


def _sampler(
    n_rows: int, rows: Sequence[int], strata: torch.Tensor | None
) -> Callable[[torch.Generator], torch.Tensor]:
    """Random row sets like ``rows``: uniform, or matched per stratum."""
    if strata is None:
        return lambda gen: torch.randperm(n_rows, generator=gen)[: len(rows)]
    wanted = torch.bincount(strata[torch.tensor(rows)], minlength=int(strata.max()) + 1)
    pools = [(strata == s).nonzero().flatten() for s in range(len(wanted))]

    def draw(gen: torch.Generator) -> torch.Tensor:
        return torch.cat(
            [
                pool[torch.randperm(len(pool), generator=gen)[: int(k)]]
                for pool, k in zip(pools, wanted, strict=True)
            ]
        )

    return draw
