"""``audit_runs``: from a candidate run (and reference runs, data, labels) to a written report.

The steps, each in its own module: read the runs' edits (:mod:`~isaerft.audit.runs`), compare
the candidate with the reference runs (:mod:`~isaerft.audit.null`), read the audited rows and
their SAE codes (:mod:`~isaerft.audit.data`, :mod:`~isaerft.audit.activations`), build the
per-latent table (:mod:`~isaerft.audit.table`), score the rows
(:mod:`~isaerft.audit.localize`), run the baselines (:mod:`~isaerft.audit.baselines`), and
write ``report.json``/``report.md``/``report.html`` plus ``suspects.jsonl``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft.audit import localize
from isaerft.audit.activations import collect_codes
from isaerft.audit.attribution import (
    LatentContrast,
    edit_attribution,
    gained_token_latents,
    ordinary_rows,
    token_excess_gain,
)
from isaerft.audit.comparable import compare_recipes, mismatch_message
from isaerft.audit.conditional import PromptDependence
from isaerft.audit.config import AuditConfig
from isaerft.audit.data import AuditData, read_rows, tokenize_rows
from isaerft.audit.evaluate import evaluate_rows, read_truth
from isaerft.audit.implicated import attach_writes, gate_latents, implicated_latents
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullComparison, compare_to_null
from isaerft.audit.phrases import gained_phrases
from isaerft.audit.report import new_report, write_report
from isaerft.audit.runs import RunEdits, check_sae_matches, check_same_latents, intervention_dir
from isaerft.audit.steps import (
    behaviour_rows,
    prompt_swap_test,
    row_weights,
    rows_section,
    run_baselines,
    score_rows,
    trigger_search,
)
from isaerft.audit.table import LatentRow, build_table
from isaerft.audit.trigger import TriggerSearch
from isaerft.backends import LanguageModel
from isaerft.model import ISaeRFTModel
from isaerft.threads import with_default_threads


@dataclass
class AuditResult:
    """What :func:`audit_runs` returns: the report and the objects behind it."""

    report: dict[str, Any]
    comparison: NullComparison | None
    latents: list[LatentRow]
    rows: localize.RowScores | None
    paths: dict[str, Path]
    dependence: PromptDependence | None = None
    trigger: TriggerSearch | None = None
    behaviour: TriggerSearch | None = None
    attribution: LatentContrast | None = None
    gained: LatentContrast | None = None

    @property
    def flagged(self) -> bool | None:
        """The dataset verdict (``None`` without enough reference runs for one)."""
        verdict = self.report.get("verdict")
        return bool(verdict["flagged"]) if verdict else None


def _as_edits(run: str | Path | RunEdits) -> RunEdits:
    return run if isinstance(run, RunEdits) else RunEdits.load(run)


def _load_models(
    run: RunEdits, model: LanguageModel | None, saes: Sequence[SAE[Any]] | None
) -> tuple[LanguageModel, list[SAE[Any]]]:
    if model is not None and saes is not None:
        return model, list(saes)
    from isaerft.training.resolve import load_recipe_model, load_recipe_saes
    from isaerft.training.run import read_run_info

    run_dir = Path(run.source)
    if not (run_dir / "run.json").is_file():
        raise ValueError(
            f"{run.source} is a bare intervention without run.json, so the audit cannot tell which "
            "model and SAE it edits; pass --model and --sae (model=, saes=)"
        )
    recipe = read_run_info(run_dir).recipe
    device = str(next(model.parameters()).device) if model is not None else "cpu"
    return (
        model if model is not None else load_recipe_model(recipe, device),
        list(saes) if saes is not None else load_recipe_saes(recipe, device),
    )


def _run_record(run: RunEdits, key: str) -> Any:
    path = Path(run.source) / "run.json"
    if not path.is_file():
        return None
    from isaerft._io import read_json

    return read_json(path).get(key)


def _tokenize(path: str | Path, model: LanguageModel) -> AuditData:
    # BOS as the model's own tokenizer call adds it, so the audit scores what training saw.
    bos = bool(getattr(model.cfg, "default_prepend_bos", True))
    return tokenize_rows(
        read_rows(path), model.tokenizer, model.cfg.n_ctx, source=str(path), prepend_bos=bos
    )


@with_default_threads
def audit_runs(
    candidate: str | Path | RunEdits,
    references: Sequence[str | Path | RunEdits] = (),
    *,
    data: str | Path | None = None,
    reference_data: str | Path | None = None,
    labels: str | Path | None = None,
    truth: str | Path | None = None,
    model: LanguageModel | None = None,
    saes: Sequence[SAE[Any]] | None = None,
    config: AuditConfig | None = None,
    out_dir: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> AuditResult:
    """Audit a trained run and write the report.

    Args:
        candidate: the run under audit (a run directory or saved intervention).
        references: runs of the same recipe on trusted data (3 or more for a calibrated null).
        data: the rows to audit; defaults to the candidate's training data (from ``run.json``).
        reference_data: trusted rows: calibrate the suspect threshold, general probes, diffing.
        labels: a Neuronpedia-style label file; defaults to the one the run was trained with.
        truth: per-row ground truth (``{"row", "poisoned"}`` JSONL) to evaluate localisation;
            defaults to ``<data>.labels.jsonl`` next to the data when it exists.
        model: the frozen model (loaded from ``run.json`` when omitted).
        saes: the SAEs (likewise).
        config: what to compute.
        out_dir: where to write the report; nothing is written when ``None``.
        extra: more top-level report entries (``timings`` entries are merged).
    """
    started = time.perf_counter()
    config = config or AuditConfig()
    cand = _as_edits(candidate)
    refs = [_as_edits(r) for r in references]
    check_same_latents(cand, refs)
    differences = compare_recipes(cand.source, [r.source for r in refs]) if refs else {}
    if differences and not config.allow_recipe_mismatch:
        raise ValueError(mismatch_message(differences))
    comparison = None
    if len(refs) >= 3:
        comparison = compare_to_null(cand, refs, config.null, top=max(config.top, 50))
    elif refs:
        warnings.warn(
            f"{len(refs)} reference run(s) cannot calibrate a null (3 or more needed); the report "
            "ranks latents by their change without a verdict",
            UserWarning,
            stacklevel=2,
        )
    data = data if data is not None else _run_record(cand, "data_path")
    labels = labels if labels is not None else _run_record(cand, "labels_path")
    label_set = LabelSet.load(labels, cand.sites) if labels else LabelSet.empty()

    report = new_report()
    report["candidate"] = {"source": cand.source, "component": cand.component, "sites": cand.sites}
    report["references"] = [r.source for r in refs]
    report["comparability"] = {"same_recipe": not differences, "differences": differences}
    report["labels"] = str(labels) if labels else None
    report["distributions"] = {
        "edits": {h: {k: v.tolist() for k, v in kinds.items()} for h, kinds in cand.edits.items()},
        "z": {h: v.tolist() for h, v in comparison.z.items()} if comparison else {},
    }

    row_scores, codes, suspect, dependence = None, None, None, None
    attribution: LatentContrast | None = None
    gained: LatentContrast | None = None
    trigger: TriggerSearch | None = None
    behaviour: TriggerSearch | None = None
    tuned: ISaeRFTModel | None = None
    if data is not None:
        model, sae_list = _load_models(cand, model, saes)
        check_sae_matches(cand, sae_list)
        tuned = ISaeRFTModel.from_pretrained(model, sae_list, intervention_dir(cand.source))
        suspect = _tokenize(data, model)
        codes = collect_codes(model, sae_list, suspect, batch_size=config.batch_size)
        trusted = _tokenize(reference_data, model) if reference_data is not None else None
        trusted_codes = (
            collect_codes(model, sae_list, trusted, batch_size=config.batch_size)
            if trusted
            else None
        )
        report["data"] = {
            "suspect": str(data),
            "suspect_rows": len(suspect),
            "reference": str(reference_data) if reference_data is not None else None,
            "reference_rows": len(trusted) if trusted else None,
        }
        weights = row_weights(cand, sae_list, comparison, config.unflagged_latents)
        ref_models = [
            ISaeRFTModel.from_pretrained(model, sae_list, intervention_dir(r.source)) for r in refs
        ]
        own_rows = [_training_rows(r, model, config.null_rows) for r in refs]
        own = [rows for rows in own_rows if rows is not None]
        row_scores = score_rows(
            config,
            tuned,
            weights,
            suspect,
            codes,
            trusted,
            trusted_codes,
            ref_models,
            own if len(own) == len(own_rows) else [],
        )
        report["rows"] = rows_section(row_scores, suspect)
        suspects = behaviour_rows(row_scores, config.behaviour_rows)
        ordinary = ordinary_rows(row_scores.order, len(suspects), config.behaviour_rows)
        if len(suspects) < len(suspect):
            gains = token_excess_gain(
                tuned, ref_models[: config.gain_references], suspect.subset([*suspects, *ordinary]),
                config.batch_size,
            )  # fmt: skip
            gained = gained_token_latents(gains, suspect, codes, suspects, ordinary)
            report["gained_tokens"] = gained.to_dict(label_set)
            phrases = gained_phrases(gains[: len(suspects)], suspect, suspects, model.tokenizer)
            report["gained_phrases"] = [p.to_dict() for p in phrases]
            if config.attribution_steps > 0:
                attribution = edit_attribution(
                    tuned, suspect, suspects, ordinary, config.attribution_steps, config.batch_size
                )
                report["edit_attribution"] = attribution.to_dict(label_set)
        if comparison is not None:
            fpr = comparison.config.fpr
            trigger = trigger_search(config, codes, suspect, row_scores, fpr)
            behaviour = trigger_search(config, codes, suspect, row_scores, fpr, "completion")
            dependence = prompt_swap_test(config, tuned, ref_models, suspect, row_scores, fpr)
        truth_path = truth if truth is not None else _default_truth(data)
        if truth_path is not None:
            report["evaluation"] = evaluate_rows(row_scores, read_truth(truth_path, len(suspect)))
        if config.baselines:
            report["baselines"] = run_baselines(
                config, model, sae_list, cand, refs, suspect, codes, trusted, trusted_codes
            )
        components = {s.hook_name: s.component for s in tuned.sites}
        tokenizer = model.tokenizer
    else:
        if saes is None:
            raise ValueError("without data the audit still needs the SAEs (saes=) for the table")
        sae_list, components, tokenizer = list(saes), None, None
    latents = build_table(
        cand,
        sae_list,
        codes=codes,
        components=components,
        comparison=comparison,
        labels=label_set,
        data=suspect,
        tokenizer=tokenizer,
        top=config.top,
        n_contexts=config.n_contexts,
    )
    if comparison is not None:
        report.update(_verdict(comparison, len(refs), dependence, trigger, label_set))
        if differences:
            report["verdict"]["kind"] += (
                " — WARNING: the reference runs were trained with other settings than the "
                "candidate, so this compares recipes as much as datasets"
            )
            report["verdict"]["comparable"] = False
        report["behaviour_search"] = behaviour.to_dict(label_set) if behaviour else None
    if comparison is not None or gained is not None:
        implicated = implicated_latents(
            comparison, trigger, gained, attribution, label_set, gate_latents(tuned)
        )
        if model is not None:
            attach_writes(implicated, model, sae_list, config.top)
        report["implicated_latents"] = implicated
    report["latents"] = [row.to_dict() for row in latents]
    report["flagged_latents"] = [
        {**asdict(f), "label": label_set.description(f.hook_name, f.index)}
        for f in (comparison.flagged if comparison else [])
    ]
    report["config"] = {**asdict(config), "ks": list(config.ks)}
    extra = dict(extra or {})
    report["timings"] = {"audit_s": time.perf_counter() - started, **extra.pop("timings", {})}
    report.update(extra)
    paths: dict[str, Path] = {}
    if out_dir is not None:
        paths = write_report(report, out_dir)
        if row_scores is not None and suspect is not None:
            paths["suspects"] = localize.write_suspects(
                Path(out_dir) / "suspects.jsonl", row_scores, suspect
            )
    return AuditResult(
        report,
        comparison,
        latents,
        row_scores,
        paths,
        dependence,
        trigger,
        behaviour,
        attribution,
        gained,
    )


def _verdict(
    comparison: NullComparison,
    n_refs: int,
    dependence: PromptDependence | None,
    trigger: TriggerSearch | None,
    labels: LabelSet,
) -> dict[str, Any]:
    changed = comparison.is_flagged
    conditional = trigger.found if trigger is not None else None
    # A backdoor needs an unusual change *and* a prompt feature shared by the rows that carry
    # it; where the trigger search cannot run (rows without prompts) the change alone decides.
    # The prompt-swap test is reported but does not vote: swapped prompts make incoherent
    # rows, and on the organism its null was too wide to separate a style shift from a poison.
    flagged = changed and (conditional is None or conditional)
    if not changed:
        kind = "no unusual change"
    elif conditional is None:
        kind = "unusual change (prompt dependence not tested)"
    elif conditional:
        kind = "unusual change tied to the prompt (possible backdoor)"
    else:
        kind = "unusual change not tied to the prompt (e.g. a style or content shift)"
    return {
        "verdict": {
            "flagged": flagged,
            "kind": kind,
            "changes_flagged": changed,
            "trigger_found": trigger.found if trigger is not None else None,
            "prompt_dependent": dependence.conditional if dependence is not None else None,
            "score": comparison.score,
            "threshold": comparison.threshold,
            "latent_threshold": comparison.latent_threshold,
            "fpr": comparison.config.fpr,
            "dataset_p_value": comparison.dataset_p_value,
            "gumbel_p_value": comparison.gumbel_p_value,
            "n_reference_runs": n_refs,
        },
        "null": {"config": asdict(comparison.config), "null_scores": comparison.null_scores},
        "trigger_search": trigger.to_dict(labels) if trigger is not None else None,
        "prompt_dependence": dependence.to_dict() if dependence is not None else None,
    }


def _training_rows(run: RunEdits, model: LanguageModel, n: int) -> AuditData | None:
    """Up to ``n`` rows (evenly spread) of the data a run trained on, if its ``run.json``
    names a readable file."""
    path = _run_record(run, "data_path")
    if not path or not Path(path).is_file():
        return None
    rows = read_rows(path)
    step = max(1, len(rows) // n)
    return tokenize_rows(rows[::step][:n], model.tokenizer, model.cfg.n_ctx, source=str(path))


def _default_truth(data: str | Path) -> Path | None:
    path = Path(data)
    for candidate in (path.with_suffix(".labels.jsonl"), Path(f"{path}.labels.jsonl")):
        if candidate.is_file():
            return candidate
    return None
