"""``AuditConfig``: what the audit computes and how, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from isaerft.audit.baselines import DEFAULT_KS
from isaerft.audit.cache import AuditCache
from isaerft.audit.null import NullConfig
from isaerft.audit.rowscores import SCORE_METHODS
from isaerft.configbase import ConfigBase, ConfigError, check_choice, check_number

_AT_LEAST_ONE = (
    "unflagged_latents",
    "null_rows",
    "top",
    "probe_rows",
    "behaviour_rows",
    "n_swaps",
    "batch_size",
    "association_draws",
)
_AT_LEAST_ZERO = ("gain_references", "row_tokens", "n_contexts", "attribution_steps")


@dataclass
class AuditConfig(ConfigBase):
    """What the audit computes and how.

    Attributes:
        null: the null calibration (false-positive rate, noise floor, dataset score).
        row_score: per-row score, ``excess_gain``, ``activation`` or ``loss_drop`` (see
            :mod:`isaerft.audit.rowscores`).
        row_fpr: fraction of reference rows allowed above the suspect threshold.
        gain_references: reference runs averaged by the ``excess_gain`` row score.
        row_tokens: the ``excess_gain`` row score sums each row's ``row_tokens`` largest
            per-token gains (0: every completion token); a planted behaviour is a short span,
            and the rest of a long completion only adds noise (see
            :mod:`isaerft.audit.rowscores`).
        null_rows: rows of each reference run's own training data scored for the
            ``excess_gain`` suspect threshold.
        unflagged_latents: latents used for row scores when none is flagged (or without a
            null): the top ones by ``|z|`` or by decoder-space impact.
        top: rows of the per-latent table.
        n_contexts: top-activating contexts per table row.
        baselines: run the top-k intersection (needs reference runs) and dataset diffing
            (needs reference data).
        ks: the ``k`` values of the top-k intersection baseline.
        probe_rows: rows of each probe set for the top-k intersection baseline.
        conditional_test: run the trigger search (see :mod:`isaerft.audit.trigger`) and the
            prompt-swap test (see :mod:`isaerft.audit.promptswap`); the dataset is flagged
            only when the rows carrying the unusual change also share a prompt feature.
        association_search: look for prompt/answer latent pairings that the audited rows have
            beyond the trusted rows (see :mod:`isaerft.audit.association`; needs trusted rows);
            one found flags the dataset even when the learned edit did not learn it. It runs at
            half the false-positive rate, so that it and the change test together stay near it.
        association_draws: trusted splits that calibrate the association search.
        behaviour_rows: the most suspect rows the trigger search and prompt-swap test use
            (at most).
        n_swaps: donor prompts per behaviour row in the prompt-swap test.
        attribution_steps: integration points of the edit attribution that ranks the
            implicated latents (see :mod:`isaerft.audit.attribution`); 0 turns it off.
        batch_size: rows per forward pass.
        allow_recipe_mismatch: audit even when a reference run was trained with other
            settings than the candidate (see :mod:`isaerft.audit.comparable`); the verdict
            then says so. Off by default: such a verdict compares recipes, not datasets.
        cache_dir: a folder where the audit keeps what it computes from the trusted rows
            alone (their SAE codes, the association search's null) for later audits against
            them (:mod:`isaerft.audit.cache`; ``None``: this process's memory only). It changes
            no result, only the time.
    """

    null: NullConfig = field(default_factory=NullConfig)
    row_score: str = "excess_gain"
    row_fpr: float = 0.01
    gain_references: int = 4
    row_tokens: int = 5
    null_rows: int = 256
    unflagged_latents: int = 5
    top: int = 30
    n_contexts: int = 5
    baselines: bool = True
    ks: tuple[int, ...] = DEFAULT_KS
    probe_rows: int = 256
    conditional_test: bool = True
    association_search: bool = True
    association_draws: int = 100
    behaviour_rows: int = 64
    n_swaps: int = 2
    attribution_steps: int = 4
    batch_size: int = 32
    allow_recipe_mismatch: bool = False
    cache_dir: str | None = None

    config_name: ClassVar[str] = "AuditConfig"

    def validate(self) -> None:
        """Ranges and choices (types are checked by :class:`~isaerft.configbase.ConfigBase`)."""
        check_choice(self.where("row_score"), self.row_score, SCORE_METHODS)
        check_number(
            self.where("row_fpr"),
            self.row_fpr,
            minimum=0,
            maximum=1,
            exclusive_minimum=True,
            exclusive_maximum=True,
        )
        for name in _AT_LEAST_ONE:
            check_number(self.where(name), getattr(self, name), minimum=1, integer=True)
        for name in _AT_LEAST_ZERO:
            check_number(self.where(name), getattr(self, name), minimum=0, integer=True)
        if not self.ks:
            raise ConfigError(
                f"{self.where('ks')}=() is invalid: give at least one k, e.g. {list(DEFAULT_KS)}"
            )
        for i, k in enumerate(self.ks):
            check_number(f"{self.where('ks')}[{i}]", k, minimum=1, integer=True)
        folder = Path(self.cache_dir) if self.cache_dir is not None else None
        if folder is not None and folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"{self.where('cache_dir')}={self.cache_dir!r} is a file, not a folder: "
                "give a folder for the audit's kept results (it is created if missing)"
            )

    def audit_cache(self) -> AuditCache:
        """Where this audit keeps and finds what it computes from the trusted rows alone."""
        return AuditCache(Path(self.cache_dir) if self.cache_dir is not None else None)
