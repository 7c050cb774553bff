"""A context-conditioned edit: "once latents A have fired in the text, scale and shift latents B".

A per-latent scale or bias acts on each position alone, so it cannot express a backdoor's
rule "if the trigger was in the prompt, change the answer": the answer's positions carry the
answer's latents, not the trigger's. This kind adds ``terms`` such rules. Term ``j`` has

* a *when* vector ``a_j`` over latents: its gate at position ``t`` is
  ``g_j(t) = relu(a_j . m_t)`` with ``m_t = max_{s <= t} f_s`` each latent's strongest
  activation so far in the text (causal: a position never sees later ones);
* a per-latent *scale* ``s_j`` and *bias* ``b_j``: where the gate is open the term adds
  ``g_j(t) * (s_j * f_t + b_j)``, a ``scale_bias`` edit of the current position.

So ``component(f)_t = f_t + sum_j g_j(t) (s_j * f_t + b_j)``. Each term reads as one sentence:
"when the latents with the largest ``a_j`` have fired, scale / add the latents with the
largest ``|s_j|`` / ``|b_j|``": the trigger and the behaviour of a backdoor, by name. ``s`` and
``b`` start at zero, so the map starts at the identity (``a = softplus(.)`` starts small,
random and positive: a gate open a little everywhere, so every term gets a gradient from the
first step). An unconditional ``scale_bias`` part takes the edits every row wants. The L1
term also charges ``a_j`` weighted by the term's output size, which keeps the *when* part
sparse once a term does something, and is zero at init.

The gate needs the sequence axis, so latents must come as ``(..., seq, d_sae)``; under
generation with a KV cache a forward sees only new positions, so
:meth:`needs_full_context` tells the model to generate without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from isaerft.components.base import LatentComponent, top_entries

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class ConditionalComponent(LatentComponent):
    """``terms`` rules "when latents A have fired, apply a scale/bias edit to latents B"."""

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        terms, dtype = config.conditional_terms, self.param_dtype
        # ``a = softplus(when_logit)`` stays positive: a term closes its gate on a latent by
        # shrinking its weight, never by a large negative weight that silences the whole term
        # (with a signed ``a``, Adam drove every weight negative and no gate ever opened).
        # Random, so the terms differ from the first step (zero-init s and b alone would give
        # every term the same gradient forever); small and positive, so every gate is open a little
        # on any text (s and b get gradients) but nearly shut.
        start = torch.rand(terms, d_sae, dtype=dtype) * (2.0 / d_sae) + 1e-6
        self.when_logit = nn.Parameter(torch.log(torch.expm1(start)))
        self.scale = nn.Parameter(torch.zeros(terms, d_sae, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(terms, d_sae, dtype=dtype))
        # The unconditional part takes the edits every row wants (answer format, style), which
        # would otherwise fill the terms and push the trigger's gate shut.
        self.always_scale = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.always_bias = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        if config.init == "normal":
            nn.init.normal_(self.scale, 0.0, config.init_std)
            nn.init.normal_(self.bias, 0.0, config.init_std)

    @property
    def when(self) -> torch.Tensor:
        """``(terms, d_sae)``: each term's non-negative weight on each latent's running max."""
        return nn.functional.softplus(self.when_logit)

    def needs_full_context(self) -> bool:
        return True

    def gates(self, f: torch.Tensor) -> torch.Tensor:
        """``(..., seq, terms)``: each term's gate at each position."""
        if f.dim() < 2:
            raise ValueError(
                "the 'conditional' component needs latents with a sequence axis, shape "
                f"(..., seq, d_sae); got shape {tuple(f.shape)}"
            )
        # Each latent's running maximum first, then the term's weighting: the gate is linear
        # in "how strongly has latent i fired so far", so every latent present in the context
        # gets credit (a max over the weighted sum would credit only the arg-max position).
        fired = torch.cummax(f.to(self.param_dtype), dim=-2).values
        return torch.relu(fired @ self.when.T)

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        gate = self.gates(f)
        f_p = f.to(self.param_dtype)
        scale = gate @ self.scale + self.always_scale
        return (gate @ self.bias + self.always_bias + scale * f_p).to(f.dtype)

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        delta = self.latent_delta(f)
        strength = self.scale.abs().sum(-1) + self.bias.abs().sum(-1)  # (terms,)
        when_l1 = (self.when.abs().sum(-1) * strength).sum() / self.d_sae
        return decoder.dense(delta), delta.abs().sum(-1).mean() + when_l1

    def edits(self) -> dict[str, torch.Tensor]:
        # Per latent: the unconditional edit, how much the rules write to it, and how much
        # open rules read from it (weighted by what those rules write, so zero at init).
        strength = (self.scale.abs().sum(-1) + self.bias.abs().sum(-1)).detach()
        return {
            "scale": self.always_scale,
            "bias": self.always_bias,
            "conditional_scale": self.scale.abs().sum(0),
            "conditional_bias": self.bias.abs().sum(0),
            "conditional_when": (self.when.abs() * strength[:, None]).sum(0),
        }

    def rules(self, top: int = 5) -> list[dict[str, object]]:
        """Each term as ``{"strength", "when": [(latent, a)], "scale": [...], "bias": [...]}``,
        strongest term first, each list the ``top`` latents by magnitude."""
        out = []
        strength = (self.scale.abs().sum(-1) + self.bias.abs().sum(-1)).detach()
        for j in torch.argsort(strength, descending=True).tolist():
            out.append(
                {
                    "strength": float(strength[j]),
                    "when": top_entries(self.when[j], top),
                    "scale": top_entries(self.scale[j], top),
                    "bias": top_entries(self.bias[j], top),
                }
            )
        return out
