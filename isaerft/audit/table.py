"""The per-latent table: what a run changed in each latent and what that latent does on the data.

For each latent the table joins the run's learned edit (``scale - 1``, ``bias``, ...), its
size in the model's own units (``|edit| x ||W_dec[j]||``), how the latent behaves on the
audited rows (firing frequency, mean code), the edit's *effective contribution* there (mean
norm of the decoded change the edit makes per token), the null comparison (``z``, p-value,
flagged) when reference runs exist, a label, and the top-activating contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from sae_lens import SAE

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullComparison
from isaerft.audit.runs import RunEdits
from isaerft.components import LatentComponent


@dataclass
class Context:
    """A token window around one activation; ``token`` is the activating token."""

    row: int
    position: int
    activation: float
    left: str
    token: str
    right: str

    @property
    def marked(self) -> str:
        """The window as text with the activating token in ``«»``."""
        return f"{self.left}«{self.token}»{self.right}"


@dataclass
class LatentRow:
    """One line of the per-latent table."""

    hook_name: str
    index: int
    label: str
    edits: dict[str, float]
    decoder_norm: float
    impact: float
    firing_frequency: float | None = None
    mean_activation: float | None = None
    mean_when_active: float | None = None
    effective_contribution: float | None = None
    z: float | None = None
    p_value: float | None = None
    flagged: bool = False
    contexts: list[Context] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (contexts included, with their marked text)."""
        out = asdict(self)
        out["contexts"] = [{**asdict(c), "marked": c.marked} for c in self.contexts]
        return out


def decoder_norms(sae: SAE[Any]) -> torch.Tensor:
    """Per latent, the norm of its decoder row (1 when the SAE rescales by it)."""
    w = sae.W_dec.detach().float()
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        return torch.ones(w.shape[0])
    return w.norm(dim=-1).cpu()


def effective_contribution(
    component: LatentComponent, codes: SiteCodes, norms: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """Per latent, the mean over tokens of ``|component(f) - f|_j * ||W_dec[j]||``."""
    total = torch.zeros(codes.d_sae, dtype=torch.float64)
    device = next(component.parameters()).device
    whole_rows = component.needs_full_context()
    with torch.no_grad():
        for start, stop in _token_chunks(codes, chunk, whole_rows):
            a, b = (int(i) for i in torch.searchsorted(codes.tok, torch.tensor([start, stop])))
            dense = torch.zeros((stop - start, codes.d_sae))
            dense[codes.tok[a:b] - start, codes.lat[a:b]] = codes.val[a:b]
            if whole_rows:
                # Its edit reads earlier positions: each row's tokens go in as one sequence.
                rows = codes.token_row[start:stop]
                parts = torch.unique_consecutive(rows, return_counts=True)[1].tolist()
                delta = torch.cat(
                    [component.latent_delta(x[None].to(device))[0] for x in dense.split(parts)]
                )
            else:
                delta = component.latent_delta(dense.to(device))
            total += delta.float().cpu().abs().sum(0).double()
    return (total / max(1, codes.n_tokens)) * norms.double()


def _token_chunks(codes: SiteCodes, chunk: int, whole_rows: bool) -> list[tuple[int, int]]:
    """``[start, stop)`` token spans of about ``chunk`` tokens; with ``whole_rows`` each span
    ends where a row ends (a row longer than ``chunk`` is one span)."""
    n = codes.n_tokens
    if not whole_rows:
        return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    ends = (torch.nonzero(codes.token_row[1:] != codes.token_row[:-1]).flatten() + 1).tolist()
    spans, start = [], 0
    for end in [*ends, n]:
        if end - start >= chunk or end == n:
            spans.append((start, end))
            start = end
    return [s for s in spans if s[1] > s[0]]


def contexts_for(
    codes: SiteCodes,
    data: AuditData,
    tokenizer: Any,
    latent: int,
    n: int = 5,
    window: int = 8,
) -> list[Context]:
    """The ``n`` strongest activations of ``latent``, each with ``window`` tokens either side."""
    tok, val = codes.token_values(latent)
    if tok.numel() == 0:
        return []
    top = val.topk(min(n, val.numel()))
    out = []
    for value, t in zip(top.values.tolist(), tok[top.indices].tolist()):
        row, pos = int(codes.token_row[t]), int(codes.token_pos[t])
        ids = data.ids[row].tolist()
        a, b = max(0, pos - window), min(len(ids), pos + window + 1)
        left, token, right = split_window(tokenizer, ids[a:b], pos - a)
        out.append(Context(row, pos, float(value), left, token, right))
    return out


def split_window(tokenizer: Any, ids: list[int], at: int) -> tuple[str, str, str]:
    """Decode ``ids`` as ``(text before, token at, text after)``, keeping the tokenizer's own
    spacing (a word-level and a BPE tokenizer space words differently)."""
    if tokenizer is None:
        return " ".join(map(str, ids[:at])), str(ids[at]), " ".join(map(str, ids[at + 1 :]))
    before = tokenizer.decode(ids[:at])
    through = tokenizer.decode(ids[: at + 1])
    full = tokenizer.decode(ids)
    token = (
        through[len(before) :] if through.startswith(before) else tokenizer.decode(ids[at : at + 1])
    )
    after = full[len(through) :] if full.startswith(through) else tokenizer.decode(ids[at + 1 :])
    return before, token, after


def build_table(
    run: RunEdits,
    saes: Sequence[SAE[Any]],
    *,
    codes: dict[str, SiteCodes] | None = None,
    components: dict[str, LatentComponent] | None = None,
    comparison: NullComparison | None = None,
    labels: LabelSet | None = None,
    data: AuditData | None = None,
    tokenizer: Any = None,
    top: int = 30,
    n_contexts: int = 5,
) -> list[LatentRow]:
    """The ``top`` latents of ``run`` as table rows, strongest first.

    Latents are ranked by ``|z|`` when a ``comparison`` is given, else by decoder-space
    impact. Data columns (frequency, activation, effective contribution, contexts) need
    ``codes`` (and ``data`` + ``tokenizer`` for contexts); ``components`` (the run's live
    components per site) enable the effective contribution.
    """
    labels = labels or LabelSet.empty()
    by_hook = {sae.cfg.metadata.hook_name: sae for sae in saes}
    norms = {hook: decoder_norms(by_hook[hook]) for hook in run.hook_names}
    impact = {
        hook: sum(v.abs() for v in run.edits[hook].values()) * norms[hook]
        for hook in run.hook_names
    }
    if comparison is not None:
        order = [(f.hook_name, f.index) for f in comparison.ranked[:top]]
        flagged = {(f.hook_name, f.index) for f in comparison.flagged}
    else:
        flat = [
            (float(v), hook, j) for hook, vec in impact.items() for j, v in enumerate(vec.tolist())
        ]
        order = [(hook, j) for _, hook, j in sorted(flat, reverse=True)[:top]]
        flagged = set()
    stats = _data_stats(codes, components, norms) if codes is not None else {}
    rows = []
    for hook, j in order:
        row = LatentRow(
            hook_name=hook,
            index=j,
            label=labels.description(hook, j),
            edits={k: float(v[j]) for k, v in run.edits[hook].items()},
            decoder_norm=float(norms[hook][j]),
            impact=float(impact[hook][j]),
            flagged=(hook, j) in flagged,
        )
        if comparison is not None:
            row.z = float(comparison.z[hook][j])
            row.p_value = float(comparison.p_values[hook][j])
        if hook in stats:
            freq, mean, active, effective = stats[hook]
            row.firing_frequency, row.mean_activation = float(freq[j]), float(mean[j])
            row.mean_when_active = float(active[j])
            row.effective_contribution = float(effective[j]) if effective is not None else None
            if data is not None and codes is not None and n_contexts > 0:
                row.contexts = contexts_for(codes[hook], data, tokenizer, j, n_contexts)
        rows.append(row)
    return rows


def _data_stats(
    codes: dict[str, SiteCodes],
    components: dict[str, LatentComponent] | None,
    norms: dict[str, torch.Tensor],
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    out = {}
    for hook, site_codes in codes.items():
        if hook not in norms:
            continue
        component = (components or {}).get(hook)
        effective = (
            effective_contribution(component, site_codes, norms[hook])
            if component is not None
            else None
        )
        out[hook] = (
            site_codes.firing_frequency(),
            site_codes.mean_activation(),
            site_codes.mean_active(),
            effective,
        )
    return out
