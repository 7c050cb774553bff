"""Row scores (poison localisation): which rows of the audited data carry the change.

Three per-row scores:

* ``activation``: ``sum_j w_j * sum_t f_j(x_t) / typical_j`` — how strongly the row drives the
  flagged latents, each weighted by its learned change in the model's units
  (``w_j = |edit_j| * ||W_dec[j]||``) and divided by its typical per-row amount on reference
  rows, so a flagged latent that fires in every row adds a constant instead of drowning the
  rare ones. Needs only SAE codes.
* ``excess_gain`` (default): how much more likely the row's completion tokens are under the
  candidate than under the reference runs (their mean), summed over the row's ``row_tokens``
  largest per-token gains — the rows the candidate fits far better than ordinary fine-tuning
  would are the ones that taught it something unusual. Uses the whole edit, so it does not
  depend on which latents were flagged. Why only the largest few tokens: a planted behaviour
  is a short span whose first tokens the edit pays for (the base model supplies the rest),
  while every token of a completion adds some memorisation of the run's own rows; summed over
  every token, that noise grows with the completion's length and buries the span in long
  completions. On 24-token Tiny Shakespeare passages the 10 % poison's row AUROC was 0.910
  summed over every token and 0.961 over the largest 5; on the organism's short answers the
  largest 5 are nearly the whole completion (see docs/audit-limits.md). Fewer tokens (3, or
  the single largest) let rows that memorised one rare token, such as a name, crowd the top
  of the ranking, which is where the trigger search reads.
* ``loss_drop``: how much more likely the row's completion becomes when only the flagged
  latents' edits are applied (summed log-probability gain over completion tokens). Rows that
  taught the change gain the most. Needs forward passes of the model.

Rows whose score exceeds the ``1 - row_fpr`` quantile of the same score on reference rows are
marked suspect. For ``excess_gain`` those are each reference run's own training rows scored
against the other references (:func:`excess_gain_null`): what an ordinary row of a run's own
data scores. Without two reference runs and their data, outliers of the audited rows' own
scores are marked instead: median + 5 MAD.

Where the association search found a prompt/answer pairing, :func:`with_associations` adds its
per-row evidence: each row ranks by the rarer of its two scores among reference rows (the
learned score's and the pairing score's tail shares, :mod:`isaerft.audit.tails`), expressed on
the learned score's scale.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData, padded_batches, run_device, token_logprobs
from isaerft.audit.tails import ScoreTail

SCORE_METHODS = ("excess_gain", "activation", "loss_drop")


@dataclass
class RowScores:
    """Per-row suspicion scores of one dataset.

    Attributes:
        scores: one score per row (higher = more suspect).
        threshold: rows above it are suspects.
        method: which score (see :data:`SCORE_METHODS`).
        reference_scores: the same score on reference rows, if it was computed.
    """

    scores: torch.Tensor
    threshold: float
    method: str
    reference_scores: torch.Tensor | None = None

    @property
    def order(self) -> list[int]:
        """Row indices, most suspect first."""
        return torch.argsort(self.scores, descending=True, stable=True).tolist()

    @property
    def suspects(self) -> list[int]:
        """Rows above the threshold, most suspect first."""
        return [i for i in self.order if float(self.scores[i]) > self.threshold]


def activation_scores(
    codes: dict[str, SiteCodes],
    weights: dict[str, dict[int, float]],
    typical: dict[str, dict[int, float]] | None = None,
) -> torch.Tensor:
    """``sum_j weights[j] * (summed code of j in the row) / typical[j]`` per row.

    ``weights`` and ``typical`` map hook -> latent -> value; ``typical`` defaults to 1.
    """
    total: torch.Tensor | None = None
    for hook, latents in weights.items():
        if not latents:
            continue
        order = sorted(latents)
        per_row = codes[hook].row_reduce(order, "sum")
        w = torch.tensor([latents[j] for j in order], dtype=torch.float64)
        if typical is not None:
            w = w / torch.tensor([typical[hook][j] for j in order], dtype=torch.float64)
        part = per_row @ w
        total = part if total is None else total + part
    if total is None:
        n_rows = next(iter(codes.values())).n_rows
        return torch.zeros(n_rows, dtype=torch.float64)
    return total


def typical_row_amount(
    codes: dict[str, SiteCodes], latents: Mapping[str, Sequence[int]], floor: float = 1e-3
) -> dict[str, dict[int, float]]:
    """Per latent, its mean summed code per row on ``codes`` (e.g. reference rows) plus the
    mean code of an active token times ``floor``, so a latent absent from those rows still
    gets a finite, small typical amount."""
    out: dict[str, dict[int, float]] = {}
    for hook, js in latents.items():
        site = codes[hook]
        order = sorted(js)
        if not order:
            out[hook] = {}
            continue
        mean_row = site.row_reduce(order, "sum").mean(0)
        active = site.mean_active()[order]
        fallback = (
            float(site.mean_active()[site.mean_active() > 0].median()) if site.lat.numel() else 1.0
        )
        out[hook] = {
            j: float(mean_row[i]) + floor * (float(active[i]) if active[i] > 0 else fallback)
            for i, j in enumerate(order)
        }
    return out


@contextmanager
def only_latents(model: Any, keep: Mapping[str, Sequence[int]]) -> Iterator[None]:
    """Within this context, the model's per-latent edits outside ``keep`` are reset to identity
    (per-latent parameters only; components without them are left whole)."""
    saved = {name: p.detach().clone() for name, p in model.named_trainable_parameters()}
    try:
        with torch.no_grad():
            for site in model.sites:
                mask = torch.zeros(site.sae.cfg.d_sae, dtype=torch.bool)
                mask[list(keep.get(site.hook_name, []))] = True
                for param in site.component.parameters():
                    if param.shape == mask.shape:
                        param[~mask.to(param.device)] = 0.0
        yield
    finally:
        model.load_trainable_state_dict(saved)


def row_logprobs(model: Any, data: AuditData, *, base: bool, batch_size: int = 32) -> torch.Tensor:
    """Per row, the summed log-probability of its completion tokens under ``model`` (with
    ``base``, its components bypassed)."""
    device = run_device(model)
    out = []
    with torch.no_grad():
        for tokens, mask, target in padded_batches(data, batch_size, device):
            with model.disabled() if base else nullcontext():
                logp = token_logprobs(model(tokens, attention_mask=mask), tokens)
            out.append((logp * target[:, 1:]).sum(-1).double().cpu())
    return torch.cat(out)


def completion_logprob_gain(
    model: Any,
    data: AuditData,
    keep: Mapping[str, Sequence[int]] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Per row, ``sum_t log p_edit(x_t) - log p_base(x_t)`` over completion tokens, with only
    the ``keep`` latents edited (all of them when ``keep`` is ``None``)."""
    base = row_logprobs(model, data, base=True, batch_size=batch_size)
    with only_latents(model, keep) if keep is not None else nullcontext():
        edited = row_logprobs(model, data, base=False, batch_size=batch_size)
    return edited - base


def token_excess_gain(
    candidate: Any, references: Sequence[Any], data: AuditData, batch_size: int = 32
) -> torch.Tensor:
    """``(rows, max_len)``: per completion token (at its own position), the candidate's
    log-probability minus the reference runs' mean (minus the base model's without
    references); 0 elsewhere."""
    others = list(references)
    length = max(len(s) for s in data.ids)
    out = torch.zeros((len(data), length), dtype=torch.float64)
    device = run_device(candidate)
    with torch.no_grad():
        start = 0
        for tokens, mask, target in padded_batches(data, batch_size, device):
            cand = token_logprobs(candidate(tokens, attention_mask=mask), tokens)
            if others:
                ref = torch.stack(
                    [token_logprobs(m(tokens, attention_mask=mask), tokens) for m in others]
                ).mean(0)
            else:
                with candidate.disabled():
                    ref = token_logprobs(candidate(tokens, attention_mask=mask), tokens)
            gain = ((cand - ref) * target[:, 1:]).double().cpu()
            out[start : start + len(tokens), 1 : 1 + gain.shape[1]] = gain
            start += len(tokens)
    return out


def top_token_sum(gains: torch.Tensor, data: AuditData, top_tokens: int) -> torch.Tensor:
    """Per row of ``gains`` (:func:`token_excess_gain` on ``data``), the sum of its
    ``top_tokens`` largest completion-token gains (all of them when ``top_tokens`` is 0 or the
    completion is shorter)."""
    width = gains.shape[1]
    positions = torch.arange(width)
    lengths = torch.tensor([len(s) for s in data.ids])
    starts = torch.tensor(data.prompt_lengths).clamp(min=1)  # <bos> is never a completion
    completion = (positions >= starts[:, None]) & (positions < lengths[:, None])
    if top_tokens == 0 or top_tokens >= width:
        return torch.where(completion, gains, 0.0).sum(1)
    ranked = torch.where(completion, gains, -torch.inf).topk(top_tokens, dim=1).values
    return torch.where(ranked.isfinite(), ranked, 0.0).sum(1)


def excess_gain(
    candidate: Any,
    references: Sequence[Any],
    data: AuditData,
    batch_size: int = 32,
    top_tokens: int = 0,
) -> torch.Tensor:
    """Per row, the candidate's completion log-probability gain over the reference runs' mean
    (over the base model without references), summed over its ``top_tokens`` largest
    per-token gains (every completion token with 0): how much better the candidate fits the
    row than ordinary fine-tuning would."""
    gains = token_excess_gain(candidate, references, data, batch_size)
    return top_token_sum(gains, data, top_tokens)


def excess_gain_null(
    references: Sequence[Any],
    own_rows: Sequence[AuditData],
    batch_size: int = 32,
    top_tokens: int = 0,
) -> torch.Tensor:
    """The ``excess_gain`` of ordinary rows in the run that trained on them: each reference
    run's gain on (a sample of) its own training rows over the other references' mean.

    That is exactly what a clean row of the candidate's data scores, so its quantiles are the
    suspect threshold (memorising one's own rows is ordinary; only more than that is
    suspect). Needs two or more reference runs.
    """
    if len(references) < 2 or len(references) != len(own_rows):
        raise ValueError("the excess-gain null needs >= 2 reference runs and each one's rows")
    out = []
    for r, data in enumerate(own_rows):
        others = [m for i, m in enumerate(references) if i != r]
        out.append(excess_gain(references[r], others, data, batch_size, top_tokens))
    return torch.cat(out)


def suspect_threshold(
    scores: torch.Tensor, reference: torch.Tensor | None, row_fpr: float
) -> float:
    """The score above which a row is a suspect (see the module docstring)."""
    if reference is not None and reference.numel():
        return float(torch.quantile(reference.double(), 1.0 - row_fpr))
    median = scores.median()
    mad = (scores - median).abs().median() * 1.4826
    return float(median + 5.0 * mad)


def auroc(scores: Sequence[float] | torch.Tensor, labels: Sequence[bool] | torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (ties count one half)."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative row")
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    # Mid-ranks of tied values: rank of a value = rows below it + (its count + 1) / 2.
    below = torch.cumsum(counts, 0) - counts
    ranks = (below + (counts + 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def with_associations(
    scores: RowScores,
    association: torch.Tensor,
    threshold: float,
    association_reference: torch.Tensor | None = None,
) -> RowScores:
    """``scores`` with the evidence of found prompt/answer pairings (``association``, each row's
    pairing score, see :mod:`isaerft.audit.association`) added.

    With reference rows for both scores (``scores.reference_scores`` and
    ``association_reference``, the pairing score of trusted rows), a row carrying a pairing
    scores the larger of its own score and the score that reference rows reach as rarely as
    trusted rows reach its pairing score (:class:`~isaerft.audit.tails.ScoreTail`): the rows
    are ranked by the smaller of their two tail shares, on the learned score's scale, so a
    poisoned row that the learned edit misses still ranks by its pairing, and one that the edit
    ranks first stays first. Rows whose pairing score trusted rows reach less often than the
    suspect threshold's share are suspects. Without reference scores the rows above
    ``threshold`` come first, by their pairing score, and are suspects."""
    carried = association > 0
    if not bool(carried.any()):
        return scores
    base = scores.scores.double()
    method = f"{scores.method}+association"
    if scores.reference_scores is not None and association_reference is not None:
        rarity = ScoreTail.fit(association_reference).log_pvalue(association)
        lifted = ScoreTail.fit(scores.reference_scores).quantile(rarity)
        combined = torch.where(carried, torch.maximum(base, lifted), base)
        return RowScores(combined, scores.threshold, method, scores.reference_scores)
    found = association > threshold
    if not bool(found.any()):
        return scores
    top = float(base.max())
    span = top - float(base.min()) + 1.0
    combined = torch.where(found, base + span + association.double(), base)
    suspect_at = min(scores.threshold, top + 0.5)
    return RowScores(combined, suspect_at, method, scores.reference_scores)
