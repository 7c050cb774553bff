"""What the learned edit does for the suspect rows, per latent: two readings.

**Edit attribution** (:func:`edit_attribution`) — which latents' edits make the suspect rows
likely.

The learned edit ``theta`` (every per-latent parameter of the run) raises the log-probability
of the completions it was trained on. Integrated gradients along the straight path from the
identity (``0``) to ``theta`` split that gain over the parameters exactly (up to the
quadrature error)::

    gain(rows) = sum_p theta_p * mean_{a in (0, 1)} d gain(rows) / d theta_p |_{a * theta}

Summing a latent's parameters gives its share. Computed on the most suspect rows and on
ordinary rows of the same dataset, the *contrast* ``share(suspect) - share(ordinary)`` is what
each latent's edit does for the suspect rows beyond what it does for every row: the generic
drift of fine-tuning (sentence ends, the chat format) helps both sets and cancels, while a
backdoor's trigger and target latents help only the rows that carry it. This is how the
learned edit names the mechanism of the poison, rather than the raw size of each change.

**Gained tokens** (:func:`gained_token_latents`) — which latents *read* the tokens the edit
made likely. Per completion token, the candidate's log-probability minus the reference runs'
mean is the learned edit's excess gain on that token; every latent that fires on the token
(at its position, in the base model's codes) gets the token's positive gain. On suspect rows
minus ordinary rows, the top latents are those of the words the data taught the model to
say: the planted target, named by the edit's effect rather than by which words are frequent
in the suspect completions (those include whatever the trigger rows talk about).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData, padded_batches, run_device, token_logprobs

DEFAULT_STEPS = 4


@dataclass
class LatentContrast:
    """Per site, per latent: a gain (nats per row) on the suspect rows, on the ordinary rows,
    and their difference (the ranking).

    Attributes:
        suspect: ``{hook: (d_sae,)}`` the latent's gain on the suspect rows.
        ordinary: the same on ordinary rows of the dataset.
        suspect_rows, ordinary_rows: the rows used.
        method: which reading (edit attribution or gained tokens).
    """

    suspect: dict[str, torch.Tensor]
    ordinary: dict[str, torch.Tensor]
    suspect_rows: list[int]
    ordinary_rows: list[int]
    method: str = "edit attribution"
    score: dict[str, torch.Tensor] | None = None

    @property
    def contrast(self) -> dict[str, torch.Tensor]:
        """``suspect - ordinary`` per site."""
        return {h: self.suspect[h] - self.ordinary[h] for h in self.suspect}

    def ranked(self) -> list[tuple[str, int, float]]:
        """``(hook, latent, score)`` with a positive score (the contrast unless the reading
        defines its own), largest first."""
        scores = self.score if self.score is not None else self.contrast
        out = [
            (hook, int(j), float(values[j]))
            for hook, values in scores.items()
            for j in torch.nonzero(values > 0).flatten().tolist()
        ]
        return sorted(out, key=lambda e: -e[2])

    def to_dict(self, labels: Any = None, top: int = 20) -> dict[str, Any]:
        """JSON form: the top latents with both shares, and the rows used."""
        suspect_total = sum(float(v.sum()) for v in self.suspect.values())
        ordinary_total = sum(float(v.sum()) for v in self.ordinary.values())
        return {
            "method": self.method,
            "suspect_gain": suspect_total,
            "ordinary_gain": ordinary_total,
            "n_suspect_rows": len(self.suspect_rows),
            "n_ordinary_rows": len(self.ordinary_rows),
            "top": [
                {
                    "hook_name": hook,
                    "index": j,
                    "score": c,
                    "suspect": float(self.suspect[hook][j]),
                    "ordinary": float(self.ordinary[hook][j]),
                    "label": labels.description(hook, j) if labels is not None else "",
                }
                for hook, j, c in self.ranked()[:top]
            ],
        }


def latent_shares(
    model: Any, data: AuditData, steps: int = DEFAULT_STEPS, batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """Per site, ``(d_sae,)``: each latent's share of the mean completion log-prob gain per
    row of ``data`` (integrated gradients, midpoint rule with ``steps`` points).

    Parameters of shape ``(d_sae,)`` count for their latent; a 2-D parameter with a ``d_sae``
    axis (an MLP's in/out weights) counts each latent's row or column; other parameters
    (biases of hidden layers) are not attributed to any latent.
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    params = [(site, p) for site in model.sites for p in site.component.parameters()]
    saved = [p.detach().clone() for _, p in params]
    grads = [torch.zeros_like(p, dtype=torch.float64) for _, p in params]
    flags = [p.requires_grad for _, p in params]
    try:
        for k in range(steps):
            alpha = (k + 0.5) / steps
            with torch.no_grad():
                for (_, p), value in zip(params, saved):
                    p.copy_(alpha * value)
            for _, p in params:
                p.requires_grad_(True)
                p.grad = None
            for tokens, mask, target in padded_batches(data, batch_size, run_device(model)):
                logp = token_logprobs(model(tokens, attention_mask=mask), tokens)
                ((logp * target[:, 1:]).sum() / len(data)).backward()
            for g, (_, p) in zip(grads, params):
                if p.grad is not None:
                    g += p.grad.double()
    finally:
        with torch.no_grad():
            for (_, p), value, flag in zip(params, saved, flags):
                p.copy_(value)
                p.grad = None
                p.requires_grad_(flag)
    shares = {site.hook_name: torch.zeros(site.sae.cfg.d_sae, dtype=torch.float64)
              for site in model.sites}  # fmt: skip
    for (site, _), value, grad in zip(params, saved, grads):
        # The shares are read on the CPU, whatever device the model ran on.
        contribution = (value.double() * grad / steps).cpu()
        d_sae = site.sae.cfg.d_sae
        if contribution.shape == (d_sae,):
            shares[site.hook_name] += contribution
        elif contribution.dim() == 2 and d_sae in contribution.shape:
            axis = 1 if contribution.shape[0] == d_sae else 0
            shares[site.hook_name] += contribution.sum(axis)
    return shares


def edit_attribution(
    model: Any,
    data: AuditData,
    suspect_rows: Sequence[int],
    ordinary_rows: Sequence[int],
    steps: int = DEFAULT_STEPS,
    batch_size: int = 32,
) -> LatentContrast:
    """:func:`latent_shares` on the suspect rows and on the ordinary rows of ``data``."""
    if not suspect_rows or not ordinary_rows:
        raise ValueError("edit attribution needs suspect rows and ordinary rows")
    return LatentContrast(
        latent_shares(model, data.subset(suspect_rows), steps, batch_size),
        latent_shares(model, data.subset(ordinary_rows), steps, batch_size),
        list(suspect_rows),
        list(ordinary_rows),
        "edit attribution: integrated gradients of the completion log-prob",
    )


def gained_token_latents(
    gains: torch.Tensor,
    data: AuditData,
    codes: dict[str, SiteCodes],
    suspect_rows: Sequence[int],
    ordinary_rows: Sequence[int],
) -> LatentContrast:
    """Which latents fire on the completion tokens the learned edit made likely.

    ``gains`` is :func:`~isaerft.audit.rowscores.token_excess_gain` on
    ``data.subset([*suspect_rows, *ordinary_rows])``.
    A behaviour is a span: the edit pays for its first token ("you"), and the rest follows
    from the base model ("should visit the castle"), so each completion token carries the
    largest gain so far in its completion (a running maximum). Per latent, the ranking score
    compares the share of that gain mass on tokens where it fires with the share of tokens it
    fires on, as a z-score over the effective number of gained tokens: the latents of the
    taught words score high, a latent that fires on every sentence end does not, however
    much gain its tokens carry too.
    """
    if not suspect_rows or not ordinary_rows:
        raise ValueError("the gained-token reading needs suspect rows and ordinary rows")
    full = span_gains(gains, data, [*suspect_rows, *ordinary_rows], data_rows(codes))
    used = full[~torch.isnan(full)]
    in_suspect = torch.zeros(data_rows(codes), dtype=torch.bool)
    in_suspect[torch.tensor(list(suspect_rows))] = True
    suspect, overall, score = {}, {}, {}
    for hook, site in codes.items():
        row, pos = site.token_row[site.tok], site.token_pos[site.tok]
        gain = full[row, pos]
        keep = ~torch.isnan(gain)
        lat, gain, sus = site.lat[keep], gain[keep], in_suspect[row[keep]]
        count = torch.bincount(lat, minlength=site.d_sae).double()
        weight = torch.zeros(site.d_sae, dtype=torch.float64)
        weight.index_add_(0, lat, gain.clamp(min=0))
        s_count = torch.bincount(lat[sus], minlength=site.d_sae).double()
        s_total = torch.zeros(site.d_sae, dtype=torch.float64).index_add_(0, lat[sus], gain[sus])
        total = torch.zeros(site.d_sae, dtype=torch.float64).index_add_(0, lat, gain)
        overall[hook] = total / count.clamp(min=1)
        suspect[hook] = s_total / s_count.clamp(min=1)
        # Share of the gain mass on tokens where the latent fires, against the share of tokens
        # it fires on: a latent of the gained words is far above its base rate, one that fires
        # on every sentence end is not, however much gain its tokens also carry.
        score[hook] = excess_share_z(weight, count, used)
    return LatentContrast(
        suspect,
        overall,
        list(suspect_rows),
        list(ordinary_rows),
        "gained tokens: latents firing on the completion tokens the edit made likely",
        score,
    )


def span_gains(
    gains: torch.Tensor, data: AuditData, rows: Sequence[int], n_rows: int
) -> torch.Tensor:
    """``(n_rows, max_len)``: per completion token of ``rows`` (indices into ``data``; row ``k``
    of ``gains`` is ``rows[k]``), the largest excess gain so far in its completion; NaN for
    every other position and row. A behaviour is a span the edit pays for at its first token,
    so the running maximum hands that gain on to the words that follow."""
    length = max(len(s) for s in data.ids)
    full = torch.full((n_rows, length), float("nan"), dtype=torch.float64)
    for k, i in enumerate(rows):
        start, stop = max(1, data.prompt_lengths[i]), len(data.ids[i])
        if stop > start:
            full[i, start:stop] = torch.cummax(gains[k, start:stop], dim=0).values
    return full


def excess_share_z(weight: torch.Tensor, count: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """Per item (a latent, a word): its share of the gain mass, ``weight`` over the positive
    part of ``used`` (every gained token's :func:`span_gains` value), against its share of
    the tokens, ``count / len(used)``, as a z-score over the effective number of gained
    tokens."""
    positive = used.clamp(min=0)
    total_weight = float(positive.sum().clamp(min=1e-12))
    n_eff = total_weight**2 / float((positive**2).sum().clamp(min=1e-12))
    base_rate = (count / len(used)).clamp(1e-6, 1 - 1e-6)
    share = weight / total_weight
    return (share - base_rate) / (base_rate * (1 - base_rate) / n_eff).sqrt()


def data_rows(codes: dict[str, SiteCodes]) -> int:
    """Rows of the dataset the codes were collected on."""
    return next(iter(codes.values())).n_rows


def ordinary_rows(order: Sequence[int], exclude: int, n: int) -> list[int]:
    """``n`` rows spread evenly over the ranks below the first ``exclude`` of ``order`` (the
    most suspect rows), so the ordinary set is the dataset's typical rows."""
    rest = list(order[exclude:])
    if len(rest) <= n:
        return rest
    step = len(rest) / n
    return [rest[int(i * step)] for i in range(n)]
