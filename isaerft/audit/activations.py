"""SAE codes of audited rows, kept sparse and indexed by (row, position), once per dataset.

Everything the audit says about data (firing frequencies, mean activations, top contexts,
per-row scores, dataset diffing) is a reduction of these codes, so they are computed in one
pass over the rows and reused. Only the layers up to the deepest site run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from sae_lens import SAE

from isaerft.audit.data import AuditData
from isaerft.backends import LanguageModel
from isaerft.rows import right_pad

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


@dataclass
class SiteCodes:
    """Non-zero SAE codes at one site over a dataset, as ``(token, latent, value)`` triplets.

    Attributes:
        hook_name: the site.
        d_sae: number of latents.
        token_row, token_pos: per token (all rows concatenated), its row and position.
        tok, lat, val: one entry per non-zero code.
        n_rows: rows in the dataset.
    """

    hook_name: str
    d_sae: int
    token_row: torch.Tensor
    token_pos: torch.Tensor
    tok: torch.Tensor
    lat: torch.Tensor
    val: torch.Tensor
    n_rows: int

    @property
    def n_tokens(self) -> int:
        return int(self.token_row.numel())

    def firing_frequency(self) -> torch.Tensor:
        """Per latent, the fraction of tokens on which it fires."""
        return torch.bincount(self.lat, minlength=self.d_sae).double() / max(1, self.n_tokens)

    def mean_activation(self) -> torch.Tensor:
        """Per latent, its mean code over all tokens (zeros included)."""
        total = torch.zeros(self.d_sae, dtype=torch.float64).index_add_(
            0, self.lat, self.val.double()
        )
        return total / max(1, self.n_tokens)

    def mean_active(self) -> torch.Tensor:
        """Per latent, its mean code over the tokens where it fires (0 if it never does)."""
        counts = torch.bincount(self.lat, minlength=self.d_sae).double()
        total = torch.zeros(self.d_sae, dtype=torch.float64).index_add_(
            0, self.lat, self.val.double()
        )
        return total / counts.clamp(min=1)

    def row_fired(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Unique ``(row, latent)`` pairs where the latent fires somewhere in the row."""
        key = torch.unique(self.token_row[self.tok] * self.d_sae + self.lat)
        return key // self.d_sae, key % self.d_sae

    def row_reduce(self, latents: Sequence[int], reduce: str = "sum") -> torch.Tensor:
        """``(n_rows, len(latents))``: each latent's summed (or max) code per row."""
        if reduce not in ("sum", "max"):
            raise ValueError(f"reduce={reduce!r} must be 'sum' or 'max'")
        column = torch.full((self.d_sae,), -1, dtype=torch.long)
        column[torch.tensor(list(latents), dtype=torch.long)] = torch.arange(len(latents))
        keep = column[self.lat] >= 0
        rows, cols = self.token_row[self.tok[keep]], column[self.lat[keep]]
        out = torch.zeros((self.n_rows, len(latents)), dtype=torch.float64)
        flat = rows * len(latents) + cols
        values = self.val[keep].double()
        if reduce == "sum":
            out.view(-1).index_add_(0, flat, values)
        else:
            out.view(-1).scatter_reduce_(0, flat, values, reduce="amax")
        return out

    def token_ids(self, data: AuditData) -> torch.Tensor:
        """Per token, its id in ``data`` (the rows these codes were collected from)."""
        # every row's ids end to end, indexed by each token's row start + position
        flat = torch.cat([row.long() for row in data.ids])
        lengths = torch.tensor([len(row) for row in data.ids])
        starts = torch.cumsum(lengths, 0) - lengths
        return flat[starts[self.token_row.long()] + self.token_pos.long()]

    def token_values(self, latent: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token indices, codes)`` where ``latent`` fires."""
        keep = self.lat == latent
        return self.tok[keep], self.val[keep]


def hook_layer(hook_name: str) -> int | None:
    """``blocks.L.x`` -> ``L``; ``None`` for hooks outside the blocks."""
    match = _BLOCK.match(hook_name)
    return int(match.group(1)) if match else None


def _stop_layer(model: LanguageModel, hooks: Sequence[str]) -> int | None:
    layers = [hook_layer(h) for h in hooks]
    if any(layer is None for layer in layers) or any(h.startswith("ln_final") for h in hooks):
        return None
    # Running the deepest site's block is enough: its hooks fire, the rest is skipped.
    return max(layer for layer in layers if layer is not None) + 1


def collect_codes(
    model: Any,
    saes: Sequence[SAE[Any]],
    data: AuditData,
    *,
    batch_size: int = 32,
    edited: bool = False,
) -> dict[str, SiteCodes]:
    """SAE codes of every row of ``data`` at each SAE's hook.

    Args:
        model: a ``HookedTransformer``, or an :class:`~isaerft.ISaeRFTModel` (its base model
            runs unless ``edited``).
        saes: the SAEs, each read at ``sae.cfg.metadata.hook_name``.
        data: the rows.
        batch_size: rows per forward pass.
        edited: for an ``ISaeRFTModel``, encode the activations *after* its edits (the
            fine-tuned model's view, used by the top-k intersection baseline).
    """
    from isaerft.model import ISaeRFTModel

    base = model.model if isinstance(model, ISaeRFTModel) else model
    hooks = [sae.cfg.metadata.hook_name for sae in saes]
    device = next(base.parameters()).device
    stop = _stop_layer(base, hooks)
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {h: [] for h in hooks}
    rows_of, pos_of, offset = [], [], 0
    for start in range(0, len(data), batch_size):
        group = data.ids[start : start + batch_size]
        tokens, mask = right_pad(group)
        cache = _run(model, base, tokens.to(device), mask.to(device), hooks, stop, edited)
        for sae, hook in zip(saes, hooks):
            with torch.no_grad():
                codes = sae.encode(cache[hook][mask.to(device)].to(sae.dtype)).float().cpu()
            nz = codes.nonzero(as_tuple=True)
            parts[hook].append((nz[0] + offset, nz[1], codes[nz]))
        rows_of.append(torch.arange(start, start + len(group)).repeat_interleave(mask.sum(1)))
        pos_of.append(torch.cat([torch.arange(len(s)) for s in group]))
        offset += int(mask.sum())
    token_row, token_pos = torch.cat(rows_of), torch.cat(pos_of)
    return {
        hook: SiteCodes(
            hook_name=hook,
            d_sae=int(sae.cfg.d_sae),
            token_row=token_row,
            token_pos=token_pos,
            tok=torch.cat([p[0] for p in parts[hook]]),
            lat=torch.cat([p[1] for p in parts[hook]]),
            val=torch.cat([p[2] for p in parts[hook]]),
            n_rows=len(data),
        )
        for sae, hook in zip(saes, hooks)
    }


def _run(
    model: Any,
    base: LanguageModel,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    hooks: list[str],
    stop: int | None,
    edited: bool,
) -> dict[str, torch.Tensor]:
    from isaerft.model import ISaeRFTModel

    store: dict[str, torch.Tensor] = {}

    # Keyed by the name asked for: a TransformerBridge calls its hook points by their
    # canonical names (blocks.L.hook_out for blocks.L.hook_resid_post).
    def keep(name: str, activation: torch.Tensor, hook: Any) -> None:
        store[name] = activation.detach()

    kwargs: dict[str, Any] = {"attention_mask": mask.long(), "return_type": None}
    if stop is not None:
        kwargs = {"attention_mask": mask.long(), "stop_at_layer": stop}
    # The recording hooks go on after the splice hooks, so with ``edited`` they see the
    # activation the edited model passes on.
    with torch.no_grad():
        if edited and isinstance(model, ISaeRFTModel):
            with model.spliced() as spliced:
                spliced.run_with_hooks(
                    tokens, fwd_hooks=[(h, partial(keep, h)) for h in hooks], **kwargs
                )
        else:
            base.run_with_hooks(tokens, fwd_hooks=[(h, partial(keep, h)) for h in hooks], **kwargs)
    return store
