"""The audit's data steps: row weights and scores, the rows section, baselines, prompt swaps.

Each function takes already-loaded objects (model, SAEs, codes) so :func:`audit_runs` stays a
readable sequence of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sae_lens import SAE

from isaerft.audit import localize
from isaerft.audit.activations import SiteCodes, collect_codes
from isaerft.audit.baselines import dataset_diff, topk_intersection
from isaerft.audit.conditional import PromptDependence, prompt_dependence
from isaerft.audit.config import AuditConfig
from isaerft.audit.data import AuditData, split_row
from isaerft.audit.null import NullComparison
from isaerft.audit.runs import RunEdits, intervention_dir
from isaerft.audit.table import decoder_norms
from isaerft.audit.trigger import TriggerSearch, length_strata, search_trigger
from isaerft.backends import LanguageModel
from isaerft.model import ISaeRFTModel

ROW_TOP = 50


def row_weights(
    run: RunEdits,
    saes: Sequence[SAE[Any]],
    comparison: NullComparison | None,
    n_unflagged: int,
) -> dict[str, dict[int, float]]:
    """The latents that drive row scores and their weights ``|change - null mean| * ||W_dec||``."""
    norms = {sae.cfg.metadata.hook_name: decoder_norms(sae) for sae in saes}
    if comparison is not None:
        chosen = comparison.flagged or comparison.ranked[:n_unflagged]
        out: dict[str, dict[int, float]] = {h: {} for h in run.hook_names}
        for f in chosen:
            out[f.hook_name][f.index] = abs(f.change - f.reference_mean) * float(
                norms[f.hook_name][f.index]
            )
        return out
    out = {}
    for hook in run.hook_names:
        impact = sum(v.abs() for v in run.edits[hook].values()) * norms[hook]
        top = impact.topk(min(n_unflagged, impact.numel()))
        out[hook] = {int(j): float(v) for j, v in zip(top.indices, top.values)}
    return out


def score_rows(
    config: AuditConfig,
    tuned: ISaeRFTModel,
    weights: dict[str, dict[int, float]],
    suspect: AuditData,
    codes: dict[str, SiteCodes],
    trusted: AuditData | None,
    trusted_codes: dict[str, SiteCodes] | None,
    references: Sequence[ISaeRFTModel] = (),
    reference_rows: Sequence[AuditData] = (),
) -> localize.RowScores:
    """Per-row scores of the audited rows (and the reference rows, for the threshold).

    ``reference_rows``: per reference run, a sample of the rows it trained on (for the
    ``excess_gain`` threshold; see :func:`~isaerft.audit.localize.excess_gain_null`).
    """
    reference: torch.Tensor | None
    if config.row_score == "excess_gain":
        refs = list(references)[: config.gain_references]
        scores = localize.excess_gain(tuned, refs, suspect, config.batch_size)
        reference = None
        own = list(reference_rows)[: len(refs)]
        if len(refs) >= 2 and len(own) == len(refs):
            reference = localize.excess_gain_null(refs, own, config.batch_size)
    elif config.row_score == "loss_drop":
        keep = {h: sorted(js) for h, js in weights.items()}
        scores = localize.completion_logprob_gain(tuned, suspect, keep, config.batch_size)
        reference = (
            localize.completion_logprob_gain(tuned, trusted, keep, config.batch_size)
            if trusted is not None
            else None
        )
    else:
        base = trusted_codes if trusted_codes is not None else codes
        typical = localize.typical_row_amount(base, {h: list(js) for h, js in weights.items()})
        scores = localize.activation_scores(codes, weights, typical)
        reference = (
            localize.activation_scores(trusted_codes, weights, typical) if trusted_codes else None
        )
    threshold = localize.suspect_threshold(scores, reference, config.row_fpr)
    return localize.RowScores(scores, threshold, config.row_score, reference)


def rows_section(scores: localize.RowScores, data: AuditData) -> dict[str, Any]:
    """The report's ``rows`` entry."""
    top = []
    for i in scores.order[:ROW_TOP]:
        prompt, completion = split_row(data.rows[i], f"row {i}")
        top.append(
            {"row": i, "score": float(scores.scores[i]), "preview": (prompt + completion)[:160]}
        )
    return {
        "method": scores.method,
        "threshold": scores.threshold,
        "n_rows": len(data),
        "n_suspects": len(scores.suspects),
        "suspects": scores.suspects,
        "top": top,
        "scores": scores.scores.tolist(),
        "reference_scores": scores.reference_scores.tolist()
        if scores.reference_scores is not None
        else None,
    }


def run_baselines(
    config: AuditConfig,
    model: LanguageModel,
    saes: list[SAE[Any]],
    cand: RunEdits,
    refs: list[RunEdits],
    suspect: AuditData,
    codes: dict[str, SiteCodes],
    trusted: AuditData | None,
    trusted_codes: dict[str, SiteCodes] | None,
) -> dict[str, Any]:
    """Dataset diffing (needs reference data) and top-k intersection (needs reference runs)
    at the first site."""
    out: dict[str, Any] = {}
    hook = cand.hook_names[0]
    if trusted_codes is not None:
        out["dataset_diff"] = dataset_diff(
            codes[hook], trusted_codes[hook], fpr=config.null.fpr
        ).to_dict()
    if refs and trusted is not None:
        probes = {
            "task": suspect.subset(range(min(config.probe_rows, len(suspect)))),
            "general": trusted.subset(range(min(config.probe_rows, len(trusted)))),
        }
        site_sae = [s for s in saes if s.cfg.metadata.hook_name == hook]
        base = {name: collect_codes(model, site_sae, d)[hook] for name, d in probes.items()}

        def probe_codes(run: RunEdits) -> dict[str, tuple[SiteCodes, SiteCodes]]:
            tuned = ISaeRFTModel.from_pretrained(model, saes, intervention_dir(run.source))
            return {
                name: (base[name], collect_codes(tuned, site_sae, d, edited=True)[hook])
                for name, d in probes.items()
            }

        result = topk_intersection(
            probe_codes(cand),
            [probe_codes(r) for r in refs],
            config.ks,
            fpr=config.null.fpr,
            sites=[cand.site_record(hook)],
        )
        out["topk_intersection"] = result.to_dict()
    return out


def behaviour_rows(scores: localize.RowScores, limit: int, minimum: int = 5) -> list[int]:
    """The rows the prompt-swap test uses: the suspects, at least ``minimum`` and at most
    ``limit`` of the highest-scoring rows."""
    n = min(limit, max(minimum, len(scores.suspects)))
    return scores.order[:n]


def has_prompts(data: AuditData) -> bool:
    """Whether the rows have prompts (prompt/completion or chat rows, not plain text)."""
    return sum(n > 1 for n in data.prompt_lengths) >= 2


def trigger_search(
    config: AuditConfig,
    codes: dict[str, SiteCodes],
    data: AuditData,
    scores: localize.RowScores,
    fpr: float,
    part: str = "prompt",
) -> TriggerSearch | None:
    """The enrichment search over the behaviour rows' prompts (the trigger) or completions
    (the behaviour); ``None`` where it cannot run (a prompt search on rows without prompts)."""
    if part == "prompt" and (not config.conditional_test or not has_prompts(data)):
        return None
    rows = behaviour_rows(scores, config.behaviour_rows)
    if len(rows) >= len(data):
        return None
    return search_trigger(codes, data, rows, fpr=fpr, part=part, strata=length_strata(data))


def prompt_swap_test(
    config: AuditConfig,
    tuned: ISaeRFTModel,
    references: Sequence[ISaeRFTModel],
    data: AuditData,
    scores: localize.RowScores,
    fpr: float,
) -> PromptDependence | None:
    """The prompt-swap test on the behaviour rows, or ``None`` where it cannot run (rows
    without prompts, fewer than 2 reference runs, no donor rows)."""
    if not config.conditional_test or len(references) < 2 or not has_prompts(data):
        return None
    rows = behaviour_rows(scores, config.behaviour_rows)
    if len(rows) >= len(data):
        return None
    return prompt_dependence(
        tuned,
        references,
        data,
        rows,
        fpr=fpr,
        n_swaps=config.n_swaps,
        batch_size=config.batch_size,
    )
