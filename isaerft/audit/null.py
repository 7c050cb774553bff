"""Null calibration: how unusual is a candidate run's edit of each latent, given reference runs?

Reference runs (the same recipe on trusted data, with other seeds or resampled rows) show how
much each latent moves when nothing was planted. For latent ``j`` and edit kind ``k``::

    z_jk = (c_jk - mean_r R_rjk) / (sqrt(sd_r(R_rjk)^2 + floor_k^2) * sqrt(1 + 1/N))

``floor_k`` is a robust noise floor (a fraction of the median per-latent spread of that edit
kind) so that a latent which never moves in the null (it never fires on trusted data) needs a
real move to stand out, not any move at all. The ``sqrt(1 + 1/N)`` makes ``z`` the
standardised error of predicting a new run from ``N`` runs, so scores computed against ``N``
and ``N - 1`` runs are on one scale. A latent's score is its largest ``|z|`` over edit kinds.

The dataset score is the mean of the ``top_m`` largest latent scores. Its threshold for a
false-positive rate ``fpr`` is calibrated leave-one-out: each reference run is scored against
the others, giving ``N`` null dataset scores; the threshold is their ``1 - fpr`` quantile
under a Gumbel fit (maxima of many scores are Gumbel-like; with ``N`` around 10 an empirical
quantile could not reach 5 %). Latents whose score exceeds the threshold of the null's
*maximum* latent score are flagged: under the null, no latent at all is flagged with
probability about ``1 - fpr`` (family-wise control).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from isaerft.audit.runs import RunEdits, check_same_latents
from isaerft.configbase import ConfigBase, check_choice, check_number

if TYPE_CHECKING:  # only for the annotation: the context check imports the trigger search
    from isaerft.audit.context import Context

THRESHOLD_METHODS = ("gumbel", "empirical")
_EULER_GAMMA = 0.5772156649015329


@dataclass
class NullConfig(ConfigBase):
    """How the reference runs become a null distribution.

    Attributes:
        fpr: false-positive rate the dataset threshold is set for (per audited dataset).
        floor_fraction: the noise floor of an edit kind is this fraction of the median
            per-latent standard deviation over latents that moved in the null.
        top_m: the dataset score averages the ``top_m`` largest latent scores.
        threshold_method: ``gumbel`` (fit to the leave-one-out null scores) or ``empirical``
            (their plain quantile; needs about ``1 / fpr`` reference runs).
    """

    fpr: float = 0.05
    floor_fraction: float = 0.5
    top_m: int = 1
    threshold_method: str = "gumbel"

    config_name: ClassVar[str] = "NullConfig"

    def validate(self) -> None:
        """Ranges and choices (types are checked by :class:`~isaerft.configbase.ConfigBase`)."""
        check_number(
            self.where("fpr"),
            self.fpr,
            minimum=0,
            maximum=1,
            exclusive_minimum=True,
            exclusive_maximum=True,
        )
        floor = self.where("floor_fraction")
        check_number(floor, self.floor_fraction, minimum=0, exclusive_minimum=True)
        check_number(self.where("top_m"), self.top_m, minimum=1, integer=True)
        check_choice(self.where("threshold_method"), self.threshold_method, THRESHOLD_METHODS)


@dataclass
class EditLayout:
    """Where each (site, edit kind) block sits in a flattened edit vector."""

    blocks: list[tuple[str, str, int, int]]  # (hook, kind, start, stop)
    sites: dict[str, int]  # hook -> d_sae

    @classmethod
    def of(cls, run: RunEdits) -> EditLayout:
        blocks, start, sites = [], 0, {}
        for hook in run.hook_names:
            for kind, tensor in run.edits[hook].items():
                blocks.append((hook, kind, start, start + tensor.numel()))
                start += tensor.numel()
            sites[hook] = next(iter(run.edits[hook].values())).numel()
        return cls(blocks, sites)

    def flatten(self, run: RunEdits) -> torch.Tensor:
        return torch.cat([run.edits[h][k].double().reshape(-1) for h, k, _, _ in self.blocks])

    def per_latent(self, z: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per site, ``(signed z of the edit kind with the largest |z|, flat index of that
        edit)`` for every latent."""
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for hook in self.sites:
            blocks = [(a, b) for h, _, a, b in self.blocks if h == hook]
            stacked = torch.stack([z[..., a:b] for a, b in blocks], dim=-1)
            best = stacked.abs().argmax(dim=-1, keepdim=True)
            starts = torch.tensor([a for a, _ in blocks])[best.squeeze(-1)]
            flat = starts + torch.arange(blocks[0][1] - blocks[0][0])
            out[hook] = (stacked.gather(-1, best).squeeze(-1), flat)
        return out

    def kind_at(self, flat: int) -> str:
        """The edit kind stored at flat index ``flat``."""
        return next(k for _, k, a, b in self.blocks if a <= flat < b)


@dataclass
class FlaggedLatent:
    """One latent the comparison flags (or ranks), with its evidence."""

    hook_name: str
    index: int
    z: float
    p_value: float
    edit_kind: str
    change: float
    reference_mean: float
    reference_sd: float


@dataclass
class NullComparison:
    """The result of comparing a candidate run with reference runs.

    Attributes:
        z: per site, the signed latent scores (``z`` of the edit kind with the largest ``|z|``).
        p_values: per site, each latent's p-value against the pooled leave-one-out null
            latent scores (calibrated across latents, not just Gaussian tails).
        score: the candidate's dataset score.
        threshold: the dataset threshold for ``config.fpr``.
        latent_threshold: the per-latent flagging threshold (null maxima, ``config.fpr``).
        null_scores: the leave-one-out dataset scores of the reference runs.
        dataset_p_value: ``(1 + #{null >= score}) / (N + 1)``; coarse with few runs.
        gumbel_p_value: the dataset score's p-value under the Gumbel fit.
        flagged: latents above ``latent_threshold``, strongest first.
        ranked: the strongest latents by ``|z|`` (flagged or not), for tables.
    """

    z: dict[str, torch.Tensor]
    p_values: dict[str, torch.Tensor]
    score: float
    threshold: float
    latent_threshold: float
    null_scores: list[float]
    dataset_p_value: float
    gumbel_p_value: float
    flagged: list[FlaggedLatent]
    ranked: list[FlaggedLatent]
    config: NullConfig

    @property
    def is_flagged(self) -> bool:
        """Whether the dataset score exceeds its threshold."""
        return self.score > self.threshold


def standardise(
    candidate: torch.Tensor, reference: torch.Tensor, layout: EditLayout, floor_fraction: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z, mean, spread)`` of ``candidate`` (``(..., F)``) against ``reference`` (``(N, F)``);
    ``spread`` is the per-edit standard deviation with the noise floor added in quadrature."""
    n = reference.shape[0]
    mean = reference.mean(0)
    sd = reference.std(0, unbiased=True) if n > 1 else torch.zeros_like(mean)
    floor = torch.empty_like(sd)
    for _, _, a, b in layout.blocks:
        floor[a:b] = floor_fraction * _typical_spread(sd[a:b], reference[:, a:b])
    spread = torch.sqrt(sd**2 + floor**2)
    return (candidate - mean) / (spread * math.sqrt(1.0 + 1.0 / n)), mean, spread


def _typical_spread(sd: torch.Tensor, block: torch.Tensor) -> float:
    moved = sd[sd > 0]
    if moved.numel():
        return float(moved.median())
    # Nothing moved in the null (e.g. one reference run): fall back to the typical edit size.
    nonzero = block.abs()[block != 0]
    return float(nonzero.median()) if nonzero.numel() else 1e-8


def latent_scores(z: torch.Tensor, layout: EditLayout) -> torch.Tensor:
    """``|z|`` per latent (largest over edit kinds), all sites concatenated: ``(..., L)``."""
    return torch.cat([v.abs() for v, _ in layout.per_latent(z).values()], dim=-1)


def dataset_score(scores: torch.Tensor, top_m: int) -> torch.Tensor:
    """Mean of the ``top_m`` largest latent scores (along the last axis)."""
    m = min(top_m, scores.shape[-1])
    return scores.topk(m, dim=-1).values.mean(-1)


class MaxStatisticNull:
    """``found`` and ``threshold_at`` for a search scored by its largest statistic against
    the same maximum over null draws: mixed into dataclasses that carry ``score``,
    ``threshold``, ``null`` and ``context`` (the trigger and association searches)."""

    score: float
    threshold: float
    null: list[float]
    context: Context | None

    @property
    def beyond_threshold(self) -> bool:
        """Whether the score is beyond the threshold (the trigger not yet checked)."""
        return self.score > self.threshold

    @property
    def found(self) -> bool:
        """Whether the score is beyond the threshold and the trigger stands (see
        :attr:`context_stands`)."""
        return self.beyond_threshold and self.context_stands

    @property
    def context_stands(self) -> bool:
        """Whether the search's trigger is more than its behaviour's own context: some
        trigger latent stands or the prompts' words differ (:mod:`isaerft.audit.context`), or the
        check was not run."""
        return self.context is None or self.context.stands

    def threshold_at(self, fpr: float) -> float:
        """The empirical threshold for another false-positive rate."""
        if not self.null:
            raise ValueError("this search kept no null draws")
        return quantile_threshold(self.null, fpr, "empirical")


def quantile_threshold(null: Sequence[float], fpr: float, method: str) -> float:
    """The ``1 - fpr`` quantile of ``null`` scores, empirical or under a Gumbel fit."""
    values = torch.tensor(list(null), dtype=torch.float64)
    if method == "empirical" or values.numel() < 2:
        return float(torch.quantile(values, 1.0 - fpr))
    loc, beta = _gumbel_fit(values)
    return loc - beta * math.log(-math.log(1.0 - fpr))


def _gumbel_fit(values: torch.Tensor) -> tuple[float, float]:
    beta = max(float(values.std(unbiased=True)) * math.sqrt(6.0) / math.pi, 1e-12)
    return float(values.mean()) - _EULER_GAMMA * beta, beta


def gumbel_p_value(score: float, null: Sequence[float]) -> float:
    """``P(null score >= score)`` under a Gumbel fitted to ``null``."""
    values = torch.tensor(list(null), dtype=torch.float64)
    if values.numel() < 2:
        return float("nan")
    loc, beta = _gumbel_fit(values)
    t = -(score - loc) / beta
    if t > 700.0:  # far below the null: exp(t) would overflow, and the p-value is 1
        return 1.0
    # -expm1 keeps tiny p-values (scores far above the null) from rounding to 0.
    return -math.expm1(-math.exp(t))


def compare_to_null(
    candidate: RunEdits,
    references: Sequence[RunEdits],
    config: NullConfig | None = None,
    *,
    top: int = 50,
) -> NullComparison:
    """Score every latent of ``candidate`` against the reference runs and flag the outliers.

    Args:
        candidate: the run under audit.
        references: at least three reference runs of the same recipe on trusted data.
        config: the null's settings (false-positive rate, floor, dataset score).
        top: how many latents ``ranked`` lists.
    """
    config = config or NullConfig()
    references = list(references)
    if len(references) < 3:
        raise ValueError(
            f"a null needs at least 3 reference runs (got {len(references)}); train more runs on "
            "trusted data (other seeds or resampled rows), ideally 8 or more"
        )
    check_same_latents(candidate, references)
    layout = EditLayout.of(candidate)
    ref = torch.stack([layout.flatten(r) for r in references])
    cand = layout.flatten(candidate)
    loo_latent = []
    for r in range(ref.shape[0]):
        others = torch.cat([ref[:r], ref[r + 1 :]])
        z_r, _, _ = standardise(ref[r], others, layout, config.floor_fraction)
        loo_latent.append(latent_scores(z_r, layout))
    null_latent = torch.stack(loo_latent)  # (N, L)
    null_scores = dataset_score(null_latent, config.top_m).tolist()
    null_max = null_latent.max(-1).values.tolist()
    z, mean, spread = standardise(cand, ref, layout, config.floor_fraction)
    per_latent = layout.per_latent(z)
    score = float(dataset_score(latent_scores(z, layout), config.top_m))
    threshold = quantile_threshold(null_scores, config.fpr, config.threshold_method)
    latent_threshold = quantile_threshold(null_max, config.fpr, config.threshold_method)
    pooled = null_latent.reshape(-1).sort().values
    p_values = {hook: _pooled_p_values(v.abs(), pooled) for hook, (v, _) in per_latent.items()}
    ordered = _rank(per_latent, p_values, layout, cand, mean, spread)
    exceed = sum(s >= score for s in null_scores)
    return NullComparison(
        z={hook: v for hook, (v, _) in per_latent.items()},
        p_values=p_values,
        score=score,
        threshold=threshold,
        latent_threshold=latent_threshold,
        null_scores=null_scores,
        dataset_p_value=(1 + exceed) / (len(null_scores) + 1),
        gumbel_p_value=gumbel_p_value(score, null_scores),
        flagged=[f for f in ordered if abs(f.z) > latent_threshold],
        ranked=ordered[:top],
        config=config,
    )


def _pooled_p_values(scores: torch.Tensor, pooled_sorted: torch.Tensor) -> torch.Tensor:
    above = pooled_sorted.numel() - torch.searchsorted(pooled_sorted, scores.double(), right=False)
    return (1.0 + above.double()) / (1.0 + pooled_sorted.numel())


def _rank(
    per_latent: dict[str, tuple[torch.Tensor, torch.Tensor]],
    p_values: dict[str, torch.Tensor],
    layout: EditLayout,
    cand: torch.Tensor,
    mean: torch.Tensor,
    spread: torch.Tensor,
) -> list[FlaggedLatent]:
    """Every latent as a :class:`FlaggedLatent`, largest ``|z|`` first."""
    entries = [
        (hook, j, z, flat)
        for hook, (zs, flats) in per_latent.items()
        for j, (z, flat) in enumerate(zip(zs.tolist(), flats.tolist()))
    ]
    entries.sort(key=lambda e: -abs(e[2]))
    return [
        FlaggedLatent(
            hook_name=hook,
            index=j,
            z=z,
            p_value=float(p_values[hook][j]),
            edit_kind=layout.kind_at(flat),
            change=float(cand[flat]),
            reference_mean=float(mean[flat]),
            reference_sd=float(spread[flat]),
        )
        for hook, j, z, flat in entries
    ]
