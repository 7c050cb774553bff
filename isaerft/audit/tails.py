"""The upper tail of a reference score distribution: how rarely reference rows score as high as
a given score (a p-value), and the score they reach that rarely (its inverse).

Inside the reference rows both are empirical: ``p(x) = (rows scoring >= x + 1) / (n + 1)``.
Past the reference's top ``tail_rows`` (at most a hundredth of them, at least 10) an
exponential is fitted to their excesses over the score where the tail starts (peaks over
threshold: Knijnenburg et al., "Fewer permutations, more accurate P-values", Bioinformatics
2009), so two scores beyond every reference row keep their order and can be compared with
another score's p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TAIL_ROWS = 100
"""Reference rows above the tail's start (the excesses the exponential is fitted to)."""


@dataclass(frozen=True)
class ScoreTail:
    """The upper tail of ``reference`` (see the module docstring); build with :meth:`fit`.

    Attributes:
        reference: the reference scores, ascending.
        start: where the fitted tail starts (the score below the reference's top ``tail_rows``).
        scale: the mean excess over ``start`` of the reference rows above it.
        start_share: ``p(start)`` on the fitted tail: (rows above ``start`` + 1) / (n + 1).
    """

    reference: torch.Tensor
    start: float
    scale: float
    start_share: float

    @classmethod
    def fit(cls, reference: torch.Tensor, tail_rows: int = TAIL_ROWS) -> ScoreTail:
        ref = reference.detach().double().flatten().sort().values
        n = ref.numel()
        if n == 0:
            raise ValueError("a score tail needs at least one reference score")
        # The top 1 % at most: shares above that (suspect thresholds, typically) stay empirical.
        m = max(1, min(tail_rows, max(10, n // 100), n - 1))
        start = float(ref[max(0, n - m - 1)])
        excess = ref[ref > start] - start
        # No reference row above the start (e.g. trusted rows never carry a pairing): nothing
        # to fit, so one unit of the score per factor e keeps larger scores ordered.
        scale = float(excess.mean()) if excess.numel() else 1.0
        return cls(ref, start, scale, (excess.numel() + 1) / (n + 1))

    def log_pvalue(self, scores: torch.Tensor) -> torch.Tensor:
        """Per score, the natural log of the share of reference rows scoring at least as high
        (fitted past the tail's start; in logs so that far scores do not all round to 0)."""
        x = scores.detach().double()
        n = self.reference.numel()
        at_least = n - torch.searchsorted(self.reference, x, right=False)
        empirical = torch.log((at_least + 1).double() / (n + 1))
        fitted = math.log(self.start_share) - (x - self.start) / self.scale
        return torch.where(x > self.start, fitted, empirical)

    def pvalue(self, scores: torch.Tensor) -> torch.Tensor:
        """Per score, the share of reference rows scoring at least as high."""
        return torch.exp(self.log_pvalue(scores))

    def quantile(self, log_p: torch.Tensor) -> torch.Tensor:
        """Per log share (:meth:`log_pvalue`), the score reference rows reach that rarely: its
        inverse (on the fitted tail below ``start_share``, the empirical upper quantile above
        it)."""
        log_p = log_p.detach().double().clamp(max=0.0)
        fitted = self.start + self.scale * (math.log(self.start_share) - log_p)
        q = (1.0 - torch.exp(log_p)).clamp(0.0, 1.0)
        empirical = torch.quantile(self.reference, q.flatten()).reshape(log_p.shape)
        return torch.where(log_p < math.log(self.start_share), fitted, empirical)
