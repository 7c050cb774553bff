"""The audit's steps, each a function of the inputs :func:`~isaerft.audit.inputs.load_inputs`
read once (and of the results it builds on), and :class:`Findings`, what they found.

:func:`~isaerft.audit.pipeline.audit_runs` calls them in order: the row scores
(:mod:`~isaerft.audit.rowscores`), the tokens and phrases the edit gained and the latents
behind them (:mod:`~isaerft.audit.attribution`, :mod:`~isaerft.audit.phrases`), the trigger and
behaviour searches (:mod:`~isaerft.audit.trigger`), the prompt-swap test
(:mod:`~isaerft.audit.promptswap`), the row evaluation, the baselines
(:mod:`~isaerft.audit.baselines`), the per-latent table (:mod:`~isaerft.audit.table`), the
implicated latents (:mod:`~isaerft.audit.implicated`) and the verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from isaerft.audit import rowscores
from isaerft.audit.activations import SiteCodes, collect_codes
from isaerft.audit.association import AssociationSearch, search_associations
from isaerft.audit.attribution import (
    LatentContrast,
    edit_attribution,
    gained_token_latents,
    ordinary_rows,
)
from isaerft.audit.baselines import dataset_diff, topk_intersection
from isaerft.audit.context import Context, check_context
from isaerft.audit.data import AuditData, has_prompts, split_row
from isaerft.audit.evaluate import evaluate_rows
from isaerft.audit.implicated import attach_writes, gate_latents, implicated_latents
from isaerft.audit.inputs import AuditInputs
from isaerft.audit.phrases import GainedPhrase, gained_phrases
from isaerft.audit.promptswap import PromptDependence, prompt_dependence
from isaerft.audit.rowscores import RowScores, token_excess_gain
from isaerft.audit.table import LatentRow, build_table, decoder_norms
from isaerft.audit.trigger import MIN_ROWS, TriggerSearch, length_strata, search_trigger
from isaerft.audit.words import WordEvidence, paired_words, word_evidence
from isaerft.model import ISaeRFTModel

ROW_TOP = 50
CONTEXT_CANDIDATES = 10
"""A search's strongest trigger latents given the context check (the report lists 10)."""


@dataclass
class Gained:
    """What the learned edit made likely on the suspect rows, and which latents' edits did it."""

    tokens: LatentContrast
    phrases: list[GainedPhrase]
    attribution: LatentContrast | None
    words: WordEvidence | None = None


@dataclass
class Findings:
    """The steps' results (each ``None`` where its step could not run)."""

    rows: RowScores | None
    gained: Gained | None
    trigger: TriggerSearch | None
    behaviour: TriggerSearch | None
    dependence: PromptDependence | None
    evaluation: dict[str, Any] | None
    baselines: dict[str, Any] | None
    latents: list[LatentRow]
    implicated: list[dict[str, Any]] | None
    association: AssociationSearch | None = None


def score_rows(inputs: AuditInputs) -> RowScores | None:
    """Per-row scores of the audited rows (and of reference rows, for the suspect threshold);
    ``None`` without data."""
    data, config = inputs.data, inputs.config
    if data is None:
        return None
    weights = row_weights(inputs)
    reference: torch.Tensor | None
    if config.row_score == "excess_gain":
        refs = data.references[: config.gain_references]
        scores = rowscores.excess_gain(
            data.tuned, refs, data.suspect, config.batch_size, config.row_tokens
        )
        reference = None
        own = data.reference_rows[: len(refs)]
        if len(refs) >= 2 and len(own) == len(refs):
            reference = rowscores.excess_gain_null(refs, own, config.batch_size, config.row_tokens)
    elif config.row_score == "loss_drop":
        keep = {h: sorted(js) for h, js in weights.items()}
        scores = rowscores.completion_logprob_gain(
            data.tuned, data.suspect, keep, config.batch_size
        )
        reference = (
            rowscores.completion_logprob_gain(data.tuned, data.trusted, keep, config.batch_size)
            if data.trusted is not None
            else None
        )
    else:
        base = data.trusted_codes if data.trusted_codes is not None else data.codes
        typical = rowscores.typical_row_amount(base, {h: list(js) for h, js in weights.items()})
        scores = rowscores.activation_scores(data.codes, weights, typical)
        reference = (
            rowscores.activation_scores(data.trusted_codes, weights, typical)
            if data.trusted_codes
            else None
        )
    threshold = rowscores.suspect_threshold(scores, reference, config.row_fpr)
    return RowScores(scores, threshold, config.row_score, reference)


def row_weights(inputs: AuditInputs) -> dict[str, dict[int, float]]:
    """The latents that drive row scores and their weights ``|change - null mean| * ||W_dec||``."""
    run, comparison = inputs.candidate, inputs.comparison
    n_unflagged = inputs.config.unflagged_latents
    norms = {sae.cfg.metadata.hook_name: decoder_norms(sae) for sae in inputs.saes}
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


def behaviour_rows(inputs: AuditInputs, scores: RowScores, minimum: int = 5) -> list[int] | None:
    """The rows the trigger search, gained tokens and prompt-swap test use: the suspects, at
    least ``minimum`` and at most ``config.behaviour_rows`` of the highest-scoring rows;
    ``None`` when they would be every row (nothing ordinary left to contrast them with)."""
    n = min(inputs.config.behaviour_rows, max(minimum, len(scores.suspects)))
    return scores.order[:n] if n < len(scores.scores) else None


def gained_evidence(inputs: AuditInputs, rows: RowScores | None) -> Gained | None:
    """The tokens and phrases the candidate made likely on the behaviour rows (beyond the
    reference runs) and, with ``attribution_steps``, which latents' edits did it; ``None``
    without data or when every row is a behaviour row (no ordinary rows to contrast)."""
    data, config = inputs.data, inputs.config
    if data is None or rows is None:
        return None
    suspects = behaviour_rows(inputs, rows)
    if suspects is None:
        return None
    ordinary = ordinary_rows(rows.order, len(suspects), config.behaviour_rows)
    gains = token_excess_gain(
        data.tuned, data.references[: config.gain_references],
        data.suspect.subset([*suspects, *ordinary]), config.batch_size,
    )  # fmt: skip
    tokens = gained_token_latents(gains, data.suspect, data.codes, suspects, ordinary)
    tokenizer = data.model.tokenizer
    phrases = gained_phrases(gains[: len(suspects)], data.suspect, suspects, tokenizer)
    words = word_evidence(
        gains, data.suspect, data.codes, suspects, ordinary, tokenizer, inputs.labels
    )
    attribution = None
    if config.attribution_steps > 0:
        attribution = edit_attribution(
            data.tuned, data.suspect, suspects, ordinary, config.attribution_steps,
            config.batch_size,
        )  # fmt: skip
    return Gained(tokens, phrases, attribution, words)


def trigger_search(
    inputs: AuditInputs, rows: RowScores | None, part: str = "prompt"
) -> TriggerSearch | None:
    """The enrichment search over the behaviour rows' prompts (the trigger) or completions
    (the behaviour); ``None`` where it cannot run (no data or null, a prompt search on rows
    without prompts)."""
    data, config, comparison = inputs.data, inputs.config, inputs.comparison
    if data is None or rows is None or comparison is None:
        return None
    if part == "prompt" and (not config.conditional_test or not has_prompts(data.suspect)):
        return None
    behaviour = behaviour_rows(inputs, rows)
    if behaviour is None:
        return None
    search = search_trigger(
        data.codes,
        data.suspect,
        behaviour,
        fpr=comparison.config.fpr,
        part=part,
        strata=length_strata(data.suspect),
    )
    if part == "prompt" and search.beyond_threshold:
        top = [(hook, j) for hook, j, _ in search.candidates[:CONTEXT_CANDIDATES]]
        search.context = context_of(inputs, top, search.rows)
    return search


def association_search(inputs: AuditInputs) -> AssociationSearch | None:
    """The association search of the audited rows against the trusted rows, at half the
    null's false-positive rate; ``None`` where it cannot run (off, no null, no trusted rows,
    rows without prompts)."""
    data, config, comparison = inputs.data, inputs.config, inputs.comparison
    if data is None or comparison is None or not config.association_search:
        return None
    if data.trusted is None or data.trusted_codes is None or not has_prompts(data.suspect):
        return None
    if len(data.trusted) < 2 * MIN_ROWS:
        return None
    search = search_associations(
        data.codes,
        data.suspect,
        data.trusted_codes,
        data.trusted,
        fpr=comparison.config.fpr / 2,
        draws=config.association_draws,
        row_fpr=config.row_fpr,
        tokenizer=data.model.tokenizer,
        cache=config.audit_cache(),
    )
    if search.beyond_threshold:
        # Its rows, or where no row passes the row threshold the rows carrying a found pair.
        carried = search.rows or [int(i) for i in (search.row_scores > 0).nonzero().flatten()]
        top = search.latents("prompt")[:CONTEXT_CANDIDATES]
        said = search.prompt_words()[:CONTEXT_CANDIDATES]
        search.context = context_of(inputs, top, carried, said)
    if search.found and search.rows:
        search.words = paired_words(
            data.suspect, data.codes, search.rows, data.trusted, data.model.tokenizer,
            inputs.labels,
        )  # fmt: skip
    return search


def context_of(
    inputs: AuditInputs,
    latents: list[tuple[str, int]],
    rows: list[int],
    words: list[tuple[int, str]] | None = None,
) -> Context | None:
    """The context check of a search's trigger latents and ``(token id, word)`` trigger words
    on its rows (:mod:`isaerft.audit.context`); ``None`` without trusted rows to match answers
    with."""
    data = inputs.data
    if data is None or data.trusted is None or data.trusted_codes is None or not rows:
        return None
    if not (latents or words) or len(data.trusted) == 0:
        return None
    fpr = inputs.comparison.config.fpr if inputs.comparison is not None else 0.05
    unembed = getattr(data.model, "W_U", None)
    return check_context(
        latents,
        rows,
        data.suspect,
        data.codes,
        data.trusted,
        data.trusted_codes,
        words=words or (),
        fpr=fpr,
        unembed=unembed.detach() if isinstance(unembed, torch.Tensor) else None,
    )


def prompt_swap_test(inputs: AuditInputs, rows: RowScores | None) -> PromptDependence | None:
    """The prompt-swap test on the behaviour rows, or ``None`` where it cannot run (no data or
    null, rows without prompts, fewer than 2 reference runs, no donor rows)."""
    data, config, comparison = inputs.data, inputs.config, inputs.comparison
    if data is None or rows is None or comparison is None:
        return None
    if not config.conditional_test or len(data.references) < 2 or not has_prompts(data.suspect):
        return None
    behaviour = behaviour_rows(inputs, rows)
    if behaviour is None:
        return None
    return prompt_dependence(
        data.tuned,
        data.references,
        data.suspect,
        behaviour,
        fpr=comparison.config.fpr,
        n_swaps=config.n_swaps,
        batch_size=config.batch_size,
    )


def evaluate(inputs: AuditInputs, rows: RowScores | None) -> dict[str, Any] | None:
    """Localisation quality against the row labels, when the data has them."""
    data = inputs.data
    if data is None or rows is None or data.truth is None:
        return None
    return evaluate_rows(rows, data.truth)


def run_baselines(inputs: AuditInputs) -> dict[str, Any] | None:
    """Dataset diffing (needs reference data) and top-k intersection (needs reference runs)
    at the first site; ``None`` without data or with ``baselines`` off."""
    data, config, cand = inputs.data, inputs.config, inputs.candidate
    if data is None or not config.baselines:
        return None
    out: dict[str, Any] = {}
    hook = cand.hook_names[0]
    if data.trusted_codes is not None:
        out["dataset_diff"] = dataset_diff(
            data.codes[hook], data.trusted_codes[hook], fpr=config.null.fpr
        ).to_dict()
    if inputs.references and data.trusted is not None:
        probes = {
            "task": data.suspect.subset(range(min(config.probe_rows, len(data.suspect)))),
            "general": data.trusted.subset(range(min(config.probe_rows, len(data.trusted)))),
        }
        site_sae = [s for s in inputs.saes if s.cfg.metadata.hook_name == hook]
        base = {name: collect_codes(data.model, site_sae, d)[hook] for name, d in probes.items()}

        def probe_codes(tuned: ISaeRFTModel) -> dict[str, tuple[SiteCodes, SiteCodes]]:
            return {
                name: (base[name], collect_codes(tuned, site_sae, d, edited=True)[hook])
                for name, d in probes.items()
            }

        result = topk_intersection(
            probe_codes(data.tuned),
            [probe_codes(m) for m in data.references],
            config.ks,
            fpr=config.null.fpr,
            sites=[cand.site_record(hook)],
        )
        out["topk_intersection"] = result.to_dict()
    return out


def latent_table(inputs: AuditInputs) -> list[LatentRow]:
    """The per-latent table (with firing statistics and contexts when there is data)."""
    data = inputs.data
    return build_table(
        inputs.candidate,
        inputs.saes,
        codes=data.codes if data is not None else None,
        components={s.hook_name: s.component for s in data.tuned.sites} if data else None,
        comparison=inputs.comparison,
        labels=inputs.labels,
        data=data.suspect if data is not None else None,
        tokenizer=data.model.tokenizer if data is not None else None,
        top=inputs.config.top,
        n_contexts=inputs.config.n_contexts,
    )


def implicated(
    inputs: AuditInputs,
    trigger: TriggerSearch | None,
    gained: Gained | None,
    association: AssociationSearch | None = None,
) -> list[dict[str, Any]] | None:
    """Every implicated latent in one ranking (``None`` without a null or gained tokens)."""
    if inputs.comparison is None and gained is None:
        return None
    gates = gate_latents(inputs.data.tuned if inputs.data is not None else None)
    out = implicated_latents(
        inputs.comparison,
        trigger,
        gained.tokens if gained is not None else None,
        gained.attribution if gained is not None else None,
        inputs.labels,
        gates,
        gained.words if gained is not None else None,
        association,
        lead=naming_lead(inputs, trigger, association),
    )
    if inputs.model is not None:
        attach_writes(out, inputs.model, inputs.saes, inputs.config.top)
    return out


def naming_lead(
    inputs: AuditInputs, trigger: TriggerSearch | None, association: AssociationSearch | None
) -> str:
    """Which route's naming leads the implicated list: the learned edit's where it flags the
    data, else the association search's where it found a pairing, else neither
    (:mod:`isaerft.audit.implicated`)."""
    if learned_flag(inputs, trigger):
        return "edit"
    return "pairing" if association is not None and association.found else "both"


def learned_flag(inputs: AuditInputs, trigger: TriggerSearch | None) -> bool:
    """Whether the learned edit flags the data: an unusual change whose rows share a prompt
    feature (or the change alone where the trigger search cannot run)."""
    comparison = inputs.comparison
    if comparison is None or not comparison.is_flagged:
        return False
    return trigger is None or trigger.found


def verdict(
    inputs: AuditInputs,
    dependence: PromptDependence | None,
    trigger: TriggerSearch | None,
    association: AssociationSearch | None = None,
) -> dict[str, Any] | None:
    """The dataset verdict and the entries behind it (``None`` without a null)."""
    comparison = inputs.comparison
    if comparison is None:
        return None
    changed = comparison.is_flagged
    conditional = trigger.found if trigger is not None else None
    # A backdoor needs an unusual change *and* a prompt feature shared by the rows that carry
    # it; where the trigger search cannot run (rows without prompts) the change alone decides.
    # The prompt-swap test is reported but does not vote: swapped prompts make incoherent
    # rows, and on the organism its null was too wide to separate a style shift from a poison.
    learned = learned_flag(inputs, trigger)
    # A pairing of prompt and answer latents new against trusted rows is a backdoor's shape in
    # the data itself: it flags the dataset even where the learned edit did not learn it.
    paired = association is not None and association.found
    flagged = learned or paired
    if paired and not learned:
        kind = (
            "prompt/answer pairing in the data beyond trusted rows (possible backdoor); the "
            "learned edit did not carry it" + ("" if changed else " (no unusual change)")
        )
    elif not changed:
        kind = "no unusual change"
    elif conditional is None:
        kind = "unusual change (prompt dependence not tested)"
    elif conditional:
        kind = "unusual change tied to the prompt (possible backdoor)"
    elif trigger is not None and not trigger.context_stands:
        kind = (
            "unusual change whose rows share only the prompts their answers call for (e.g. "
            "colour questions before colour words): a behaviour of its own context, not a "
            "trigger's"
        )
    else:
        kind = "unusual change not tied to the prompt (e.g. a style or content shift)"
    if association is not None and association.beyond_threshold and not paired:
        kind += (
            "; the data's prompt/answer pairing beyond trusted rows is only the context its "
            "answers call for (not a trigger)"
        )
    out: dict[str, Any] = {
        "verdict": {
            "flagged": flagged,
            "kind": kind,
            "changes_flagged": changed,
            "trigger_found": trigger.found if trigger is not None else None,
            "association_found": association.found if association is not None else None,
            "prompt_dependent": dependence.conditional if dependence is not None else None,
            "score": comparison.score,
            "threshold": comparison.threshold,
            "latent_threshold": comparison.latent_threshold,
            "fpr": comparison.config.fpr,
            "dataset_p_value": comparison.dataset_p_value,
            "gumbel_p_value": comparison.gumbel_p_value,
            "n_reference_runs": len(inputs.references),
        },
        "null": {"config": asdict(comparison.config), "null_scores": comparison.null_scores},
        "trigger_search": trigger.to_dict(inputs.labels) if trigger is not None else None,
        "association_search": association.to_dict(inputs.labels) if association else None,
        "prompt_dependence": dependence.to_dict() if dependence is not None else None,
    }
    if inputs.differences:
        out["verdict"]["kind"] += (
            " — WARNING: the reference runs were trained with other settings than the "
            "candidate, so this compares recipes as much as datasets"
        )
        out["verdict"]["comparable"] = False
    return out


def rows_section(scores: RowScores, data: AuditData) -> dict[str, Any]:
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
