"""The implicated latents: every latent the audit points at, with its evidence and what it
writes.

Three lists are evidence that a latent belongs to what the data taught:

* ``trigger`` — it fires in the suspect rows' prompts far more than in the others'
  (:mod:`isaerft.audit.trigger`);
* ``behaviour`` — it fires on the completion tokens that the learned edit made likely in the
  suspect rows beyond ordinary rows (gained tokens, :mod:`isaerft.audit.attribution`): the
  words the data taught the model to say;
* ``edit`` — its own edit makes the suspect rows likely beyond ordinary rows (edit
  attribution, same module): the mechanism;
* ``gate`` — the learned edit's own rules open on it (a ``conditional`` component's *when*
  weights, by the strength of the rules that read them): the trigger, as the edit names it.

Latents with trigger, gate or behaviour evidence come first, ranked by their best rank in those
lists (ties: trigger first, then more roles), so the top of the list holds the head of each:
the trigger and the behaviour it switches on. Latents named only by the edit attribution
follow (the mechanism: often generic latents the edit leans on), then latents that are only
*flagged* as
unusually changed against the reference runs follow, strongest first: they are mostly the
generic drift of fine-tuning (sentence ends, the chat format) and say little about the
poison. The completion-enrichment search (``behaviour_search`` in the report) is not
evidence here: the suspect completions also repeat whatever the trigger rows talk about.

Each entry also says what the latent *writes*: its top promoted tokens (the decoder direction
through the final normalisation and unembedding, as Neuronpedia's "top logits"), so a target
latent is named by the behaviour it produces, not only by what it reads.
"""

from __future__ import annotations

from typing import Any

import torch

from isaerft.audit.attribution import LatentContrast
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullComparison
from isaerft.audit.trigger import TriggerSearch

EVIDENCE_TOP = 20
"""How deep into each evidence list latents are taken."""


def promoted_tokens(model: Any, sae: Any, indices: list[int], k: int = 5) -> dict[int, list[str]]:
    """Per latent, the ``k`` tokens its decoder direction promotes most through the final
    normalisation and the unembedding (the direct path; later layers are skipped)."""
    if not indices or getattr(model, "tokenizer", None) is None:
        return {}
    with torch.no_grad():
        directions = sae.W_dec[indices].float()
        if getattr(model.cfg, "normalization_type", None) in ("LN", "LNPre"):
            directions = directions - directions.mean(-1, keepdim=True)
        weight = getattr(getattr(model, "ln_final", None), "w", None)
        if weight is not None:
            directions = directions * weight.float()
        logits = directions @ model.W_U.float()
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices.tolist()
    decode = model.tokenizer.convert_ids_to_tokens
    return {j: [str(t) for t in decode(ids)] for j, ids in zip(indices, top)}


def gate_latents(model: Any) -> list[tuple[str, int, float]]:
    """``(hook, latent, weight)`` that the learned edit's rules read, strongest first: per
    latent, the sum over rules of its *when* weight times the rule's strength (the
    ``conditional_when`` edit); empty for components without rules."""
    out = []
    for site in getattr(model, "sites", []):
        weight = site.component.edits().get("conditional_when")
        if weight is None:
            continue
        top = torch.argsort(weight, descending=True)[:EVIDENCE_TOP].tolist()
        out += [(site.hook_name, int(j), float(weight[j])) for j in top if weight[j] > 0]
    return sorted(out, key=lambda e: -e[2])[:EVIDENCE_TOP]


def implicated_latents(
    comparison: NullComparison | None,
    trigger: TriggerSearch | None,
    gained: LatentContrast | None,
    attribution: LatentContrast | None,
    labels: LabelSet,
    gates: list[tuple[str, int, float]] | None = None,
) -> list[dict[str, Any]]:
    """Every implicated latent, most implicated first (see the module docstring)."""
    evidence: dict[str, list[tuple[str, int, float]]] = {}
    if trigger is not None and trigger.found:
        evidence["trigger"] = trigger.candidates[:EVIDENCE_TOP]
    if gates:
        evidence["gate"] = gates[:EVIDENCE_TOP]
    if gained is not None:
        evidence["behaviour"] = gained.ranked()[:EVIDENCE_TOP]
    if attribution is not None:
        evidence["edit"] = attribution.ranked()[:EVIDENCE_TOP]
    contrast = attribution.contrast if attribution is not None else {}
    entries: dict[tuple[str, int], dict[str, Any]] = {}

    def entry(hook: str, index: int) -> dict[str, Any]:
        return entries.setdefault(
            (hook, index),
            {
                "hook_name": hook,
                "index": index,
                "roles": [],
                "best_rank": None,
                "attribution": float(contrast[hook][index]) if hook in contrast else None,
                "z": None,
                "label": labels.description(hook, index),
                "writes": [],
            },
        )

    for role, ranked in evidence.items():
        for rank, (hook, j, _) in enumerate(ranked, start=1):
            e = entry(hook, j)
            e["roles"].append(role)
            e["best_rank"] = rank if e["best_rank"] is None else min(e["best_rank"], rank)
    for f in comparison.flagged if comparison is not None else []:
        e = entry(f.hook_name, f.index)
        e["roles"].append("changed")
        e["z"] = f.z

    def order(e: dict[str, Any]) -> tuple[int, float, int, int, float]:
        # Trigger and behaviour name the poison; the edit list names its mechanism (often
        # generic latents the edit uses), so its latents follow unless they also name it.
        naming = [r for r in e["roles"] if r in ("trigger", "gate", "behaviour")]
        tier = 0 if naming else (1 if "edit" in e["roles"] else 2)
        rank = e["best_rank"] if e["best_rank"] is not None else float("inf")
        first = 0 if {"trigger", "gate"} & set(e["roles"]) else 1
        return (tier, rank, first, -len(e["roles"]), -abs(e["z"] or 0.0))

    return sorted(entries.values(), key=order)


def attach_writes(
    entries: list[dict[str, Any]], model: Any, saes: list[Any], top: int, k: int = 5
) -> None:
    """Fill the ``writes`` of the first ``top`` entries with :func:`promoted_tokens`."""
    for sae in saes:
        hook = sae.cfg.metadata.hook_name
        mine = [e for e in entries[:top] if e["hook_name"] == hook]
        tokens = promoted_tokens(model, sae, sorted({e["index"] for e in mine}), k)
        for e in mine:
            e["writes"] = tokens.get(e["index"], [])
