"""What a trained run learned, per latent: its edits read from a saved run, without the model.

A run is a training run directory (``RUN/intervention/`` plus ``run.json``) or a bare saved
intervention (``isaerft_config.json`` + ``isaerft_weights.safetensors``). The audit compares
runs latent by latent, so every run it compares must edit the same latents of the same SAEs:
:func:`check_same_latents` enforces that with the SAE fingerprints the artifact records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from isaerft.artifact import (
    WEIGHTS_HASH,
    read_intervention_config,
    read_intervention_weights,
    site_records,
)
from isaerft.components import build_component
from isaerft.config import ISaeRFTConfig
from isaerft.runs import RUN_FILE, START_RECORD, intervention_of, read_run_record

if TYPE_CHECKING:
    from isaerft.model import ISaeRFTModel


@dataclass
class RunEdits:
    """Per site, the per-latent edits of one run as deviations from identity.

    Attributes:
        edits: ``{hook_name: {edit_kind: tensor (d_sae,)}}``, e.g. ``{"scale": s - 1}``.
        sites: the artifact's site records (hook, ``d_sae``, SAE fingerprint, ...).
        component: the component kind the run trained.
        source: where the run came from (a path, or ``"<model>"``).
    """

    edits: dict[str, dict[str, torch.Tensor]]
    sites: list[dict[str, Any]]
    component: str
    source: str = ""

    @property
    def hook_names(self) -> list[str]:
        """The spliced hooks, in site order."""
        return [site["hook_name"] for site in self.sites]

    def site_record(self, hook_name: str) -> dict[str, Any]:
        """The artifact record of the site at ``hook_name``."""
        for site in self.sites:
            if site["hook_name"] == hook_name:
                return site
        raise KeyError(f"run {self.source} has no site at {hook_name!r}; sites: {self.hook_names}")

    @classmethod
    def from_model(cls, model: ISaeRFTModel, source: str = "<model>") -> RunEdits:
        """The edits of a live :class:`~isaerft.ISaeRFTModel`."""
        edits = {
            hook: {kind: t.detach().float().cpu() for kind, t in kinds.items()}
            for hook, kinds in model.latent_edits().items()
        }
        return cls(edits, site_records(model), model.config.component, source)

    @classmethod
    def load(cls, path: str | Path) -> RunEdits:
        """Read the edits of a run directory or saved intervention (no model needed)."""
        folder = intervention_dir(path)
        record = read_intervention_config(folder)
        config = ISaeRFTConfig.from_dict(record["config"])
        state = read_intervention_weights(folder, record)
        edits: dict[str, dict[str, torch.Tensor]] = {}
        for site in record["sites"]:
            hook = site["hook_name"]
            component = build_component(config.component, int(site["d_sae"]), config)
            prefix = f"{hook}/"
            own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                component.load_state_dict(own, strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"{folder} holds weights that do not match its config: {err}"
                ) from err
            edits[hook] = {k: v.detach().float().clone() for k, v in component.edits().items()}
        return cls(edits, record["sites"], config.component, str(path))

    def minus(self, start: RunEdits) -> RunEdits:
        """The edits this run added on top of ``start`` (a differential run's delta)."""
        edits = {
            hook: {kind: t - start.edits[hook][kind] for kind, t in kinds.items()}
            for hook, kinds in self.edits.items()
        }
        return RunEdits(edits, self.sites, self.component, self.source)

    def vector(self, hook_name: str, kind: str) -> torch.Tensor:
        """One edit vector, e.g. ``vector("blocks.1.hook_resid_post", "scale")``."""
        return self.edits[hook_name][kind]


def intervention_dir(path: str | Path) -> Path:
    """The saved intervention of a finished run directory (or ``path`` itself if it is one);
    unfinished or mismatched run folders are refused (see :func:`isaerft.runs.intervention_of`)."""
    return intervention_of(path)


def check_same_latents(candidate: RunEdits, references: Sequence[RunEdits]) -> None:
    """Raise ``ValueError`` unless every reference edits the very latents the candidate edits:
    the same hooks, component kind and SAE weights (by fingerprint)."""
    want = {s["hook_name"]: s for s in candidate.sites}
    for ref in references:
        have = {s["hook_name"]: s for s in ref.sites}
        if sorted(have) != sorted(want):
            raise ValueError(
                f"reference run {ref.source} has sites {sorted(have)} but the candidate "
                f"{candidate.source} has {sorted(want)}; train the references on the same hooks"
            )
        if ref.component != candidate.component:
            raise ValueError(
                f"reference run {ref.source} trained {ref.component!r} components but the candidate "
                f"trained {candidate.component!r}; compare runs of the same component kind"
            )
        for hook, site in want.items():
            if have[hook]["sae_fingerprint"] != site["sae_fingerprint"]:
                raise ValueError(
                    f"reference run {ref.source} used a different SAE at {hook!r} than the "
                    f"candidate {candidate.source} (SAE fingerprints differ); reference runs must "
                    "use the candidate's SAE"
                )


def check_sae_matches(run: RunEdits, saes: Sequence[Any]) -> None:
    """Raise ``ValueError`` if the given SAEs are not the ones the run was trained with."""
    from isaerft.artifact import check_saes_match

    try:
        check_saes_match({"sites": run.sites}, list(saes))
    except ValueError as err:
        raise ValueError(f"run {run.source} does not fit the given SAE: {err}") from err


def run_start(run: RunEdits) -> dict[str, Any] | None:
    """The start of a differential run (``{"path", "weights_sha256"}`` from its ``run.json``),
    ``None`` for a run trained from identity or a bare saved intervention."""
    path = Path(run.source) / RUN_FILE
    if not path.is_file():
        return None
    start = read_run_record(path.parent).get(START_RECORD)
    return start if isinstance(start, dict) else None


def deltas_from_start(
    candidate: RunEdits, references: Sequence[RunEdits]
) -> tuple[RunEdits, list[RunEdits], dict[str, Any] | None]:
    """Compare differential runs by what each added to their common start.

    Returns the candidate and references as deltas from the start, and the start record
    (``None``, and the runs unchanged, when no run has a start). A mix of starts is refused:
    deltas from different starts measure different things.
    """
    start = run_start(candidate)
    for ref in references:
        other = run_start(ref)
        same = (other or {}).get("weights_sha256") == (start or {}).get("weights_sha256")
        if (other is None) != (start is None) or not same:
            raise ValueError(
                f"the candidate {candidate.source} starts from "
                f"{(start or {}).get('path', 'identity')} but the reference run {ref.source} "
                f"from {(other or {}).get('path', 'identity')}; train every run of a "
                "differential audit from the same start_from (isaerft audit-dataset "
                "--differential does)"
            )
    if start is None:
        return candidate, list(references), None
    folder = intervention_dir(start["path"])
    if read_intervention_config(folder).get(WEIGHTS_HASH) != start.get("weights_sha256"):
        raise ValueError(
            f"the start {start['path']} of the differential runs was changed after they trained "
            "(its weights hash differs from the one in their run.json); audit runs trained "
            "from the start as it is now"
        )
    base = RunEdits.load(start["path"])
    return candidate.minus(base), [r.minus(base) for r in references], start
