"""``audit_runs``: from a candidate run (and reference runs, data, labels) to a written report.

A straight line. :func:`~isaerft.audit.inputs.load_inputs` reads everything once into an
:class:`~isaerft.audit.inputs.AuditInputs`; each step (in :mod:`~isaerft.audit.findings`) is a
function of it (and of the results it builds on): the row scores (:mod:`~isaerft.audit.rowscores`), the tokens and
phrases the edit gained and the latents behind them (:mod:`~isaerft.audit.attribution`,
:mod:`~isaerft.audit.phrases`), the trigger and behaviour searches
(:mod:`~isaerft.audit.trigger`), the prompt-swap test (:mod:`~isaerft.audit.promptswap`), the
row evaluation, the baselines (:mod:`~isaerft.audit.baselines`), the per-latent table
(:mod:`~isaerft.audit.table`), the verdict and the implicated latents
(:mod:`~isaerft.audit.implicated`). :func:`build_report` assembles the report from them and
:func:`~isaerft.audit.report.write_audit` writes every file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft.audit.association import AssociationSearch
from isaerft.audit.attribution import LatentContrast
from isaerft.audit.config import AuditConfig
from isaerft.audit.findings import (
    Findings,
    association_search,
    evaluate,
    gained_evidence,
    implicated,
    latent_table,
    prompt_swap_test,
    rows_section,
    run_baselines,
    score_rows,
    trigger_search,
    verdict,
)
from isaerft.audit.inputs import AuditInputs, load_inputs
from isaerft.audit.null import NullComparison
from isaerft.audit.promptswap import PromptDependence
from isaerft.audit.report import new_report, write_audit
from isaerft.audit.rowscores import RowScores, with_associations
from isaerft.audit.runs import RunEdits
from isaerft.audit.table import LatentRow
from isaerft.audit.trigger import TriggerSearch
from isaerft.backends import LanguageModel
from isaerft.threads import with_default_threads


@dataclass
class AuditResult:
    """What :func:`audit_runs` returns: the report and the objects behind it."""

    report: dict[str, Any]
    comparison: NullComparison | None
    latents: list[LatentRow]
    rows: RowScores | None
    paths: dict[str, Path]
    dependence: PromptDependence | None = None
    trigger: TriggerSearch | None = None
    behaviour: TriggerSearch | None = None
    association: AssociationSearch | None = None
    attribution: LatentContrast | None = None
    gained: LatentContrast | None = None

    @property
    def flagged(self) -> bool | None:
        """The dataset verdict (``None`` without enough reference runs for one)."""
        verdict = self.report.get("verdict")
        return bool(verdict["flagged"]) if verdict else None


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
    device: str | None = None,
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
        device: where to load the model and SAEs that are not passed (default: the passed
            model's device, else ``cpu``), e.g. ``cuda``.
    """
    started = time.perf_counter()
    inputs = load_inputs(
        candidate,
        references,
        data=data,
        reference_data=reference_data,
        labels=labels,
        truth=truth,
        model=model,
        saes=saes,
        config=config or AuditConfig(),
        device=device,
    )
    learned_rows = score_rows(inputs)
    gained = gained_evidence(inputs, learned_rows)
    trigger = trigger_search(inputs, learned_rows, "prompt")
    association = association_search(inputs)
    # The learned edit's row ranking feeds the searches that read the edit; the rows reported
    # (and scored against the truth) add a found pairing's evidence (with_associations).
    rows = learned_rows
    if rows is not None and association is not None and association.found:
        rows = with_associations(
            rows,
            association.row_scores,
            association.row_threshold,
            association.reference_row_scores,
        )
    findings = Findings(
        rows=rows,
        gained=gained,
        trigger=trigger,
        behaviour=trigger_search(inputs, rows, "completion"),
        dependence=prompt_swap_test(inputs, learned_rows),
        evaluation=evaluate(inputs, rows),
        baselines=run_baselines(inputs),
        latents=latent_table(inputs),
        implicated=implicated(inputs, trigger, gained, association),
        association=association,
    )
    report = build_report(inputs, findings, extra, started)
    suspect = inputs.data.suspect if inputs.data is not None else None
    paths = write_audit(report, out_dir, rows, suspect) if out_dir is not None else {}
    return AuditResult(
        report,
        inputs.comparison,
        findings.latents,
        rows,
        paths,
        findings.dependence,
        trigger,
        findings.behaviour,
        association,
        gained.attribution if gained is not None else None,
        gained.tokens if gained is not None else None,
    )


def build_report(
    inputs: AuditInputs, found: Findings, extra: dict[str, Any] | None, started: float
) -> dict[str, Any]:
    """The report (see :mod:`~isaerft.audit.report` for its keys) from the inputs and the
    steps' results; ``extra`` entries are added at the top level (``timings`` merged)."""
    cand, comparison, labels, config = (
        inputs.candidate, inputs.comparison, inputs.labels, inputs.config
    )  # fmt: skip
    report = new_report()
    report["candidate"] = {"source": cand.source, "component": cand.component, "sites": cand.sites}
    report["references"] = [r.source for r in inputs.references]
    report["differential"] = {"start_from": inputs.start} if inputs.start else None
    report["comparability"] = {
        "same_recipe": not inputs.differences,
        "differences": inputs.differences,
    }
    report["labels"] = str(inputs.labels_path) if inputs.labels_path else None
    report["distributions"] = {
        "edits": {h: {k: v.tolist() for k, v in kinds.items()} for h, kinds in cand.edits.items()},
        "z": {h: v.tolist() for h, v in comparison.z.items()} if comparison else {},
    }
    data = inputs.data
    if data is not None and found.rows is not None:
        report["data"] = {
            "suspect": data.suspect_path,
            "suspect_rows": len(data.suspect),
            "reference": data.trusted_path,
            "reference_rows": len(data.trusted) if data.trusted else None,
        }
        report["rows"] = rows_section(found.rows, data.suspect)
    if found.gained is not None:
        report["gained_tokens"] = found.gained.tokens.to_dict(labels)
        report["gained_phrases"] = [p.to_dict() for p in found.gained.phrases]
        if found.gained.words is not None:
            report["words"] = found.gained.words.to_dict(labels)
        if found.gained.attribution is not None:
            report["edit_attribution"] = found.gained.attribution.to_dict(labels)
    if found.evaluation is not None:
        report["evaluation"] = found.evaluation
    if found.baselines is not None:
        report["baselines"] = found.baselines
    found_verdict = verdict(inputs, found.dependence, found.trigger, found.association)
    if found_verdict is not None:
        report.update(found_verdict)
        report["behaviour_search"] = found.behaviour.to_dict(labels) if found.behaviour else None
    if found.implicated is not None:
        report["implicated_latents"] = found.implicated
    report["latents"] = [row.to_dict() for row in found.latents]
    report["flagged_latents"] = [
        {**asdict(f), "label": labels.description(f.hook_name, f.index)}
        for f in (comparison.flagged if comparison else [])
    ]
    report["config"] = {**asdict(config), "ks": list(config.ks)}
    extra = dict(extra or {})
    report["timings"] = {"audit_s": time.perf_counter() - started, **extra.pop("timings", {})}
    report.update(extra)
    return report
