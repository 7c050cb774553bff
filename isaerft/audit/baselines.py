"""Baselines the audit is compared with, on the same data and runs.

* **Top-k latent intersection**: per token, the overlap of the top-``k`` SAE latents of the
  base model and of the fine-tuned model (the SAE applied to the activation the fine-tuned
  model passes on), averaged over a *task* probe set (the suspect rows) and a *general* probe
  set (trusted rows). A fine-tune that rewires task behaviour lowers the task overlap more
  than the general one; the *intersection difference* is ``general - task``. The per-latent
  variant counts, per latent, the task tokens where it enters or leaves the top ``k``. Both
  get the same null treatment as the audit (reference runs through the same probes).
* **Dataset diffing**: no training; per latent, the fraction of rows where it fires in the
  suspect vs the reference data, a two-proportion z-score, and a permutation null of the
  maximum ``|z|`` for the dataset threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.null import NullComparison, NullConfig, compare_to_null
from isaerft.audit.runs import RunEdits

DEFAULT_KS = (1, 5, 10, 20, 50)


def _dense_topk(codes: SiteCodes, k: int, chunk: int = 4096) -> torch.Tensor:
    """Per token, the indices of its top-``k`` active latents (``-1`` where fewer are active)."""
    out = torch.full((codes.n_tokens, k), -1, dtype=torch.long)
    bounds = torch.searchsorted(codes.tok, torch.arange(0, codes.n_tokens + chunk, chunk))
    for i, start in enumerate(range(0, codes.n_tokens, chunk)):
        a, b = int(bounds[i]), int(bounds[i + 1])
        n = min(chunk, codes.n_tokens - start)
        dense = torch.zeros((n, codes.d_sae))
        dense[codes.tok[a:b] - start, codes.lat[a:b]] = codes.val[a:b]
        top = dense.topk(min(k, codes.d_sae), dim=-1)
        idx = torch.where(top.values > 0, top.indices, torch.full_like(top.indices, -1))
        out[start : start + n, : idx.shape[1]] = idx
    return out


def overlap_rates(
    base: SiteCodes, tuned: SiteCodes, ks: Sequence[int] = DEFAULT_KS
) -> dict[int, float]:
    """Per ``k``, the mean over tokens of ``|top_k(base) & top_k(tuned)| / max(sizes)``."""
    k_max = max(ks)
    a, b = _dense_topk(base, k_max), _dense_topk(tuned, k_max)
    out = {}
    for k in ks:
        ak, bk = a[:, :k], b[:, :k]
        same = ((ak[:, :, None] == bk[:, None, :]) & (ak[:, :, None] >= 0)).any(-1).sum(-1)
        size = torch.maximum((ak >= 0).sum(-1), (bk >= 0).sum(-1))
        rate = torch.where(
            size > 0, same.double() / size.clamp(min=1), torch.ones_like(same.double())
        )
        out[k] = float(rate.mean())
    return out


def latent_churn(base: SiteCodes, tuned: SiteCodes, k: int) -> torch.Tensor:
    """Per latent, the fraction of tokens where it is in exactly one of the two top-``k`` sets."""
    a, b = _dense_topk(base, k), _dense_topk(tuned, k)
    in_a = (a[:, :, None] == b[:, None, :]).any(-1)
    in_b = (b[:, :, None] == a[:, None, :]).any(-1)
    left = a[(a >= 0) & ~in_a]
    entered = b[(b >= 0) & ~in_b]
    counts = torch.bincount(torch.cat([left, entered]), minlength=base.d_sae).double()
    return counts / max(1, base.n_tokens)


@dataclass
class IntersectionResult:
    """The top-k intersection baseline for one candidate run and its null.

    Attributes:
        ks: the ``k`` values.
        candidate: per ``k``, ``{"task", "general", "difference"}`` overlap rates.
        null_differences: per ``k``, the reference runs' differences.
        z: per ``k``, the candidate difference standardised by the null.
        threshold_z: the one-sided normal threshold for ``fpr``.
        flagged: per ``k``, whether the candidate's difference is beyond it.
        per_latent: the per-latent churn variant compared with the null (at ``latent_k``).
    """

    ks: list[int]
    candidate: dict[int, dict[str, float]]
    null_differences: dict[int, list[float]]
    z: dict[int, float]
    threshold_z: float
    flagged: dict[int, bool]
    latent_k: int
    per_latent: NullComparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the per-latent part as its top flagged latents)."""
        out: dict[str, Any] = {
            "ks": self.ks,
            "candidate": {str(k): v for k, v in self.candidate.items()},
            "null_differences": {str(k): v for k, v in self.null_differences.items()},
            "z": {str(k): v for k, v in self.z.items()},
            "threshold_z": self.threshold_z,
            "flagged": {str(k): v for k, v in self.flagged.items()},
            "latent_k": self.latent_k,
        }
        if self.per_latent is not None:
            out["per_latent"] = {
                "score": self.per_latent.score,
                "threshold": self.per_latent.threshold,
                "flagged": self.per_latent.is_flagged,
                "top": [
                    {"hook_name": f.hook_name, "index": f.index, "z": f.z}
                    for f in self.per_latent.ranked[:20]
                ],
            }
        return out


def run_difference(
    probes: dict[str, tuple[SiteCodes, SiteCodes]], ks: Sequence[int]
) -> dict[int, dict[str, float]]:
    """``{k: {task, general, difference}}`` from ``{"task": (base, tuned), "general": ...}``."""
    task = overlap_rates(*probes["task"], ks)
    general = overlap_rates(*probes["general"], ks)
    return {
        k: {"task": task[k], "general": general[k], "difference": general[k] - task[k]} for k in ks
    }


def topk_intersection(
    candidate: dict[str, tuple[SiteCodes, SiteCodes]],
    references: Sequence[dict[str, tuple[SiteCodes, SiteCodes]]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    fpr: float = 0.05,
    latent_k: int = 10,
    sites: list[dict[str, Any]] | None = None,
) -> IntersectionResult:
    """The top-k intersection baseline (one site) with its null from reference runs.

    ``candidate`` and each reference map ``"task"`` and ``"general"`` to ``(base codes,
    tuned codes)`` of one site on fixed probe sets (the same probes for every run).
    ``sites`` (the runs' site records) enables the per-latent variant.
    """
    ks = sorted(set(ks) | {latent_k})
    cand = run_difference(candidate, ks)
    null = [run_difference(r, ks) for r in references]
    threshold = NormalDist().inv_cdf(1.0 - fpr)
    z, flagged, null_diffs = {}, {}, {}
    for k in ks:
        values = [n[k]["difference"] for n in null]
        null_diffs[k] = values
        mean = sum(values) / max(1, len(values))
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
        scale = max(sd, 1e-9) * math.sqrt(1.0 + 1.0 / max(1, len(values)))
        z[k] = (cand[k]["difference"] - mean) / scale
        flagged[k] = z[k] > threshold
    per_latent = None
    if sites is not None and len(references) >= 3:
        hook = sites[0]["hook_name"]

        def churn_run(probes: dict[str, tuple[SiteCodes, SiteCodes]], name: str) -> RunEdits:
            churn = latent_churn(*probes["task"], latent_k)
            return RunEdits({hook: {"churn": churn}}, sites[:1], "churn", name)

        per_latent = compare_to_null(
            churn_run(candidate, "candidate"),
            [churn_run(r, f"reference-{i}") for i, r in enumerate(references)],
            NullConfig(fpr=fpr),
        )
    return IntersectionResult(ks, cand, null_diffs, z, threshold, flagged, latent_k, per_latent)


@dataclass
class DiffResult:
    """Dataset diffing: per-latent row firing rates of suspect vs reference rows.

    Attributes:
        hook_name: the site.
        rate_suspect, rate_reference: per latent, the fraction of rows where it fires.
        z: per latent, the two-proportion z-score (suspect minus reference).
        score: ``max |z|``.
        threshold: the ``1 - fpr`` quantile of ``max |z|`` over row permutations.
        flagged: latents with ``|z|`` above the threshold, strongest first.
    """

    hook_name: str
    rate_suspect: torch.Tensor
    rate_reference: torch.Tensor
    z: torch.Tensor
    score: float
    threshold: float
    flagged: list[int]
    null_scores: list[float]

    @property
    def is_flagged(self) -> bool:
        """Whether the suspect data differs beyond the permutation threshold."""
        return self.score > self.threshold

    def to_dict(self, top: int = 20) -> dict[str, Any]:
        """JSON-ready summary with the ``top`` latents by ``|z|``."""
        order = torch.argsort(self.z.abs(), descending=True)[:top].tolist()
        return {
            "hook_name": self.hook_name,
            "score": self.score,
            "threshold": self.threshold,
            "flagged": self.is_flagged,
            "n_flagged_latents": len(self.flagged),
            "top": [
                {
                    "index": j,
                    "z": float(self.z[j]),
                    "rate_suspect": float(self.rate_suspect[j]),
                    "rate_reference": float(self.rate_reference[j]),
                }
                for j in order
            ],
        }


def _two_proportion_z(
    count_a: torch.Tensor, n_a: int, count_b: torch.Tensor, n_b: int
) -> torch.Tensor:
    pa, pb = count_a / n_a, count_b / n_b
    pooled = (count_a + count_b) / (n_a + n_b)
    # Half a row of pseudo-count keeps latents that never fire in either set at z = 0.
    var = (pooled * (1 - pooled)).clamp(min=0.5 / (n_a + n_b)) * (1.0 / n_a + 1.0 / n_b)
    return (pa - pb) / var.sqrt()


def dataset_diff(
    suspect: SiteCodes,
    reference: SiteCodes,
    *,
    fpr: float = 0.05,
    permutations: int = 200,
    seed: int = 0,
) -> DiffResult:
    """Per-latent firing-frequency difference of two datasets at one site, no training."""
    rows_s, lats_s = suspect.row_fired()
    rows_r, lats_r = reference.row_fired()
    n_s, n_r, d = suspect.n_rows, reference.n_rows, suspect.d_sae
    count_s = torch.bincount(lats_s, minlength=d).double()
    count_r = torch.bincount(lats_r, minlength=d).double()
    z = _two_proportion_z(count_s, n_s, count_r, n_r)
    rows = torch.cat([rows_s, rows_r + n_s])
    lats = torch.cat([lats_s, lats_r])
    total = count_s + count_r
    gen = torch.Generator().manual_seed(seed)
    null_scores = []
    for _ in range(permutations):
        in_a = torch.zeros(n_s + n_r, dtype=torch.bool)
        in_a[torch.randperm(n_s + n_r, generator=gen)[:n_s]] = True
        count_a = torch.bincount(lats[in_a[rows]], minlength=d).double()
        null_scores.append(float(_two_proportion_z(count_a, n_s, total - count_a, n_r).abs().max()))
    threshold = float(torch.quantile(torch.tensor(null_scores, dtype=torch.float64), 1.0 - fpr))
    order = torch.argsort(z.abs(), descending=True)
    flagged = [int(j) for j in order.tolist() if float(z[j].abs()) > threshold]
    return DiffResult(
        hook_name=suspect.hook_name,
        rate_suspect=count_s / n_s,
        rate_reference=count_r / n_r,
        z=z,
        score=float(z.abs().max()),
        threshold=threshold,
        flagged=flagged,
        null_scores=null_scores,
    )
