"""The implicated latents: every latent the audit points at, with its evidence and what it
writes.

The evidence that a latent belongs to what the data taught:

* ``trigger`` — it fires in the suspect rows' prompts far more than in the others'
  (:mod:`isaerft.audit.trigger`);
* ``trigger word`` — it reads a word that the suspect rows' prompts share far more than other
  prompts (:mod:`isaerft.audit.words`);
* ``behaviour`` — it reads a word the learned edit made likely in the suspect rows beyond
  ordinary rows (a gained word, :mod:`isaerft.audit.words`): the words the data taught the
  model to say;
* ``paired prompt`` / ``paired answer`` — it is the prompt / answer side of a pairing the
  audited rows have far beyond trusted rows (:mod:`isaerft.audit.association`), or it reads a
  word of that pairing's rows (a prompt word they share; an answer word beyond trusted answers
  to similar prompts, :func:`~isaerft.audit.words.paired_words`): the trigger and the
  behaviour as the data pairs them, found without the learned edit. On the prompt side the
  words' readers alternate with the pairs' prompt latents, as for the trigger; on the answer
  side all the answer words' readers come first: an answer word is measured against trusted
  answers to similar prompts, a pair's completion latent only against all trusted rows, so
  the latter is mostly what the trigger's topic brings (``red``, ``golden`` on a sentiment
  flip of owl stories) and, alternated, pushed the flipped words' readers out of the top 10.
  Not where the learned edit leads: there its gained words already rank the answer, and an
  answer word ranked ahead lifts the reader of a planted sentence's generic word (``you``)
  into the edit's group (see ``lead`` below), pushing a target word's reader out;
* ``gate`` — the learned edit's own rules open on it (a ``conditional`` component's *when*
  weights, by the strength of the rules that read them): the trigger, as the edit names it;
* ``gained`` — it fires on the completion tokens the edit made likely, ranked per latent
  (:func:`~isaerft.audit.attribution.gained_token_latents`): the latents of what those tokens
  share with every row (sentence ends, the chat format) crowd this list, so it follows;
* ``edit`` — its own edit makes the suspect rows likely beyond ordinary rows (edit
  attribution, same module): the mechanism.

The two trigger lists are merged by alternation into one trigger ranking, the trigger words'
readers first: the search ranks every latent of the suspect prompts, so besides the trigger's
it lifts latents of whatever the trigger sits in (for ``like the fox``: latents labelled
``red``, ``near``, plural words), while a trigger word is the trigger itself. The route that
flagged the data names it first (``lead``):

* the learned edit (``lead="edit"``): its naming roles (trigger, trigger word, gate, behaviour)
  first; the pairing roles right after, except the reader of a word of the pairing's rows
  that the edit attribution also implicates (``edit``): both routes name it, so it ranks with
  the first group by its best rank in either's lists (on a corpus poison, the reader of the
  target word ``all`` is a paired answer the edit attribution carries, while the edit's gained
  words lead with ``the`` and ``in``). The pairing's own latents stay after, even where the
  edit attribution carries them: they are often the generic words of the planted answer
  (``you`` of ``you should visit the castle``);
* only the association search (``lead="pairing"``): the pairing roles first, the learned
  edit's naming roles after (the edit's change was not unusual, so the words of its suspect
  rows are mostly chance: story words ``about``, ``tell`` on a sentiment flip);
* neither (``lead="both"``): every naming role together.

Within a group latents rank by their best rank in its lists (ties: trigger first, then more
roles), so the top of the list holds the head of each: the trigger and the behaviour it
switches on. Why words, not latents, are ranked first: latents of generic tokens
(``.``, ``the``) fire on the gained spans too and outrank the taught words' latents in any
latent-level ranking; per word, the frequent tokens fall away (their gain is no larger than
their share of tokens) and the taught words stand out. Latents named only by ``gained`` or
``edit`` follow, then latents that are only *flagged* as unusually changed against the
reference runs, strongest first: they are mostly the generic drift of fine-tuning and say
little about the poison. The completion-enrichment search (``behaviour_search`` in the report)
is not evidence here: the suspect completions also repeat whatever the trigger rows talk about.

Each entry also says what the latent *writes*: its top promoted tokens (the decoder direction
through the final normalisation and unembedding, as Neuronpedia's "top logits"), so a target
latent is named by the behaviour it produces, not only by what it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from isaerft.audit.association import AssociationSearch
from isaerft.audit.attribution import LatentContrast
from isaerft.audit.labels import LabelSet
from isaerft.audit.null import NullComparison
from isaerft.audit.trigger import TriggerSearch
from isaerft.audit.words import WordEvidence

EVIDENCE_TOP = 20
"""How deep into each evidence list latents are taken."""
PAIRING_ROLES = ("paired prompt", "paired answer")
"""Roles from the association search, which reads the data, not the learned edit."""
EDIT_NAMING_ROLES = ("trigger", "trigger word", "gate", "behaviour")
"""Naming roles read from the learned edit (its suspect rows, gained words and rules)."""
NAMING_ROLES = (*EDIT_NAMING_ROLES, *PAIRING_ROLES)
"""Roles that name the poison (the rest name the mechanism or the drift)."""
LEADS = ("edit", "pairing", "both")
"""Which route's naming leads the list (see the module docstring)."""
TRIGGER_ROLES = ("trigger", "trigger word", "gate", "paired prompt")
ROLE_LEGEND = (
    "trigger = fires in the suspect rows' prompts far more than elsewhere; trigger word = reads "
    "a word those prompts share; behaviour = reads a word the learned edit made likely in them "
    "(the words are in brackets); paired prompt / paired answer = a side of a prompt/answer "
    "pairing the data has far beyond trusted rows; gate = the edit's rules open on it; gained = "
    "fires on the tokens the edit made likely; edit = its own edit does the work; changed = an "
    "unusual edit against the reference runs. Naming roles (trigger, trigger word, paired "
    "prompt, gate, behaviour, paired answer) come first, by their best rank, those of the "
    "route that flagged the data (the learned edit or the pairing) before the other's"
)
"""What each role means, for every rendering of the list."""


def describe_roles(entry: dict[str, Any]) -> str:
    """``"trigger word, behaviour [owl, castle]"``: an entry's roles and the words behind them."""
    words = f" [{', '.join(entry['words'])}]" if entry.get("words") else ""
    return ", ".join(entry["roles"]) + words


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
    words: WordEvidence | None = None,
    association: AssociationSearch | None = None,
    lead: str = "both",
) -> list[dict[str, Any]]:
    """Every implicated latent, most implicated first (see the module docstring).

    ``lead`` is the route that flagged the data: ``"edit"`` (the learned edit; then latents
    named only by the association search follow its naming, so the pairing's generic answer
    latents, ``you`` and ``to`` of an appended sentence, do not push the edit's words out),
    ``"pairing"`` (only the association search; the edit's naming follows) or ``"both"``."""
    if lead not in LEADS:
        raise ValueError(f"lead={lead!r} is not one of {LEADS}")
    # Each evidence list: (rank, role, hook, latent, word), best first.
    evidence: list[list[tuple[int, str, str, int, str | None]]] = []
    searched = trigger.candidates[:EVIDENCE_TOP] if trigger is not None and trigger.found else []
    trigger_words = words.latents("trigger")[:EVIDENCE_TOP] if words is not None else []
    evidence.append(
        _alternate(
            [("trigger word", h, j, w) for h, j, w in trigger_words],
            [("trigger", h, j, None) for h, j, _ in searched],
        )
    )
    evidence.append(_ranked("gate", [(h, j, None) for h, j, _ in (gates or [])[:EVIDENCE_TOP]]))
    if words is not None:
        taught = words.latents("behaviour")[:EVIDENCE_TOP]
        evidence.append(_ranked("behaviour", taught))
    if association is not None and association.found:
        said = association.words
        for role, part, side in (
            ("paired prompt", "prompt", "trigger"),
            ("paired answer", "completion", "behaviour"),
        ):
            # The words of the pairing's rows lead its latents: alternating on the prompt side
            # (as for the trigger) and where the learned edit leads; all first on the answer
            # side of a pairing that leads (see the module docstring).
            read = said.latents(side)[:EVIDENCE_TOP] if said is not None else []
            paired = [(h, j, None) for h, j in association.latents(part)[:EVIDENCE_TOP]]
            if side == "trigger" or lead == "edit":
                evidence.append(
                    _alternate([(role, *r) for r in read], [(role, *p) for p in paired])
                )
            else:
                evidence.append(_ranked(role, [*read, *paired]))
    for role, reading in (("gained", gained), ("edit", attribution)):
        if reading is not None:
            top = reading.ranked()[:EVIDENCE_TOP]
            evidence.append(_ranked(role, [(h, j, None) for h, j, _ in top]))
    contrast = attribution.contrast if attribution is not None else {}
    entries: dict[tuple[str, int], dict[str, Any]] = {}

    def entry(hook: str, index: int) -> dict[str, Any]:
        return entries.setdefault(
            (hook, index),
            {
                "hook_name": hook,
                "index": index,
                "roles": [],
                "words": [],
                "best_rank": None,
                "attribution": float(contrast[hook][index]) if hook in contrast else None,
                "z": None,
                "label": labels.description(hook, index),
                "writes": [],
            },
        )

    ranks: dict[tuple[str, int], dict[str, int]] = {}
    for ranked in evidence:
        for rank, role, hook, j, word in ranked:
            e = entry(hook, j)
            mine = ranks.setdefault((hook, j), {})
            if role not in mine:
                e["roles"].append(role)
                mine[role] = rank
            if word is not None and word not in e["words"]:
                e["words"].append(word)
    groups = _naming_groups(lead)
    tiers: dict[tuple[str, int], int] = {}
    for key, mine in ranks.items():
        tier, roles = _tier(set(mine), groups, lead, bool(entries[key]["words"]))
        tiers[key] = tier
        # A naming entry ranks by the evidence of its group only: a latent high in the edit
        # list but deep in the trigger list must not jump the trigger's head.
        naming = [r for role, r in mine.items() if role in roles]
        entries[key]["best_rank"] = min(naming or mine.values())
    for f in comparison.flagged if comparison is not None else []:
        e = entry(f.hook_name, f.index)
        e["roles"].append("changed")
        e["z"] = f.z

    def order(e: dict[str, Any]) -> tuple[int, float, int, int, float]:
        # Trigger and behaviour name the poison; gained-token and edit latents are mostly what
        # every row shares (sentence ends, the chat format), so they follow unless they also
        # name it.
        roles = set(e["roles"])
        tier = tiers.get((e["hook_name"], e["index"]), len(groups) + 1)
        rank = e["best_rank"] if e["best_rank"] is not None else float("inf")
        first = 0 if roles & set(TRIGGER_ROLES) else 1
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


def _naming_groups(lead: str) -> list[set[str]]:
    """The naming roles in the order their groups rank (see the module docstring)."""
    if lead == "edit":
        return [set(EDIT_NAMING_ROLES), set(PAIRING_ROLES)]
    if lead == "pairing":
        return [set(PAIRING_ROLES), set(EDIT_NAMING_ROLES)]
    return [set(NAMING_ROLES)]


def _tier(
    roles: set[str], groups: list[set[str]], lead: str, reads_words: bool
) -> tuple[int, set[str]]:
    """The group an entry with ``roles`` ranks in, and the roles its rank is read from:
    the first naming group it has a role of, except that a reader of a pairing's word that the
    edit attribution also implicates joins the edit's group with both routes' ranks
    (``lead="edit"``); then mechanism (``gained``, ``edit``), then the rest."""
    if lead == "edit" and reads_words and roles & set(PAIRING_ROLES) and "edit" in roles:
        return 0, set(EDIT_NAMING_ROLES) | set(PAIRING_ROLES)
    for tier, group in enumerate(groups):
        if roles & group:
            return tier, group
    return (len(groups), set()) if roles & {"gained", "edit"} else (len(groups) + 1, set())


def _alternate(
    a: list[tuple[str, str, int, str | None]], b: list[tuple[str, str, int, str | None]]
) -> list[tuple[int, str, str, int, str | None]]:
    """``a[0], b[0], a[1], b[1], ...`` (the longer list's rest after the shorter ends) with
    each item's rank: a latent in both lists keeps its first rank and both roles."""
    out: list[tuple[int, str, str, int, str | None]] = []
    rank_of: dict[tuple[str, int], int] = {}
    for k in range(max(len(a), len(b))):
        for role, hook, j, word in a[k : k + 1] + b[k : k + 1]:
            rank = rank_of.setdefault((hook, j), len(rank_of) + 1)
            out.append((rank, role, hook, j, word))
    return out


def _ranked(
    role: str, items: Sequence[tuple[str, int, str | None]]
) -> list[tuple[int, str, str, int, str | None]]:
    return [(rank, role, h, j, w) for rank, (h, j, w) in enumerate(items, start=1)]
