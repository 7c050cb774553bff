"""How much of the intervention the exported vectors reproduce, measured as next-token KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from isaerft.export.data import TokenData, token_batches
from isaerft.export.steering import VectorsLike, steer
from isaerft.model import ISaeRFTModel


def approximation_gap(
    model: ISaeRFTModel,
    vectors: VectorsLike,
    data: TokenData,
    *,
    batch_size: int = 8,
    multiplier: float = 1.0,
) -> dict[str, float]:
    """Mean per-token ``KL(P_isaerft || Q)`` on ``data`` for ``Q`` = the base model steered by
    ``vectors`` and ``Q`` = the unsteered base model (the reference).

    ``kl_steered`` near 0 means the vectors reproduce the intervention; ``kl_steered / kl_base``
    is the fraction of the intervention's divergence from the base model they leave unexplained.

    Returns:
        ``{"kl_steered": ..., "kl_base": ..., "n_tokens": ...}`` (nats per token).
    """
    hooked = model.model
    totals = torch.zeros(2, dtype=torch.float64)
    n_tokens = 0
    with torch.no_grad():
        for tokens, mask in token_batches(hooked, data, batch_size):
            target = F.log_softmax(model(tokens).float(), dim=-1)
            base = F.log_softmax(hooked(tokens).float(), dim=-1)
            with steer(hooked, vectors, multiplier=multiplier):
                steered = F.log_softmax(hooked(tokens).float(), dim=-1)
            for slot, other in enumerate((steered, base)):
                kl = (target.exp() * (target - other)).sum(-1)
                totals[slot] += kl[mask].sum(dtype=torch.float64).cpu()
            n_tokens += int(mask.sum())
    return {
        "kl_steered": float(totals[0] / n_tokens),
        "kl_base": float(totals[1] / n_tokens),
        "n_tokens": float(n_tokens),
    }
