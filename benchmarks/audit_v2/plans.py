"""What the audit v2 benchmark trains and audits: the plans (``quick``, ``corpus``,
``smoke``), the corpus organism's case, and cases of your own (``--case TRIGGER TARGET``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.audit_poison.grid import FAMILIES, TARGETS, Cell, TargetSpec, TriggerFamily
from isaerft.organism.lexicon import LEXICON


@dataclass(frozen=True)
class Plan:
    """What one mode trains and audits."""

    name: str
    fractions: tuple[float, ...] = (0.01, 0.03, 0.1)
    families: tuple[str, ...] = ("word", "phrase", "concept")
    targets: tuple[str, ...] = ("phrase", "flip", "concept")
    control_fraction: float = 0.03
    clean_nulls: int = 20
    n_reference_runs: int = 8
    n_rows: int = 2000
    seeds: tuple[int, ...] = (0,)
    poisons: tuple[tuple[str, str, float], ...] | None = None
    decoys: tuple[tuple[str, str], ...] | None = None
    benign_fractions: tuple[float, ...] | None = None
    clean_case: tuple[str, str] = ("word", "phrase")
    extra: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        grid = [(f, t, x) for f in self.families for t in self.targets for x in self.fractions]
        out = [
            Cell("poison", fam, tgt, frac, seed)
            for fam, tgt, frac in (self.poisons or grid)
            for seed in self.seeds
        ]
        pairs = self.decoys or [(f, t) for f in self.families for t in self.targets]
        out += [
            Cell("decoy", fam, tgt, self.control_fraction, seed)
            for fam, tgt in pairs
            for seed in self.seeds
        ]
        benign = self.fractions if self.benign_fractions is None else self.benign_fractions
        out += [Cell("benign-shift", "word", "phrase", f, 0) for f in benign]
        fam, tgt = self.clean_case
        out += [Cell("clean", fam, tgt, 0.0, 100 + s) for s in range(self.clean_nulls)]
        return out


PLANS = {
    "quick": Plan(
        "quick",
        fractions=(0.01, 0.03),
        # Every family x target at 3 %, and the word and phrase families at 1 % as well.
        poisons=(
            *(
                (f, t, 0.03)
                for f in ("word", "phrase", "concept")
                for t in ("phrase", "flip", "concept")
            ),
            ("word", "phrase", 0.01),
            ("phrase", "phrase", 0.01),
            ("word", "concept", 0.01),
            ("word", "flip", 0.01),
        ),
        clean_nulls=20,
        decoys=(("word", "phrase"), ("phrase", "phrase"), ("concept", "phrase")),
        benign_fractions=(0.03,),
    ),
    # A corpus organism (--corpus, e.g. Tiny Shakespeare): its own default trigger word and
    # target phrase (registered as the "corpus" family and target), held out.
    "corpus": Plan(
        "corpus",
        fractions=(0.03, 0.1),
        families=("corpus",),
        targets=("corpus",),
        poisons=(("corpus", "corpus", 0.03), ("corpus", "corpus", 0.1)),
        decoys=(("corpus", "corpus"),),
        benign_fractions=(),
        clean_nulls=10,
        clean_case=("corpus", "corpus"),
    ),
    "smoke": Plan(
        "smoke",
        fractions=(0.1,),
        families=("word",),
        targets=("phrase",),
        clean_nulls=1,
        n_reference_runs=3,
        n_rows=200,
    ),
}


def case_specs(
    trigger: str, target: str, family: str, behaviour: str
) -> tuple[TriggerFamily, TargetSpec]:
    """A trigger spec and a target spec of :func:`isaerft.organism.make_dataset` as the family
    ``family`` and the target ``behaviour``, with the ground-truth words and concepts each spec
    plants: a concept trigger's concept, a sentiment flip's polarity words and concept, a
    concept substitution's word, a phrase's words."""
    if trigger.startswith("concept:"):
        trig = TriggerFamily(family, trigger, concepts=(trigger.split(":", 1)[1],))
    else:
        trig = TriggerFamily(family, trigger, words=tuple(trigger.split()))
    if target.startswith("sentiment:"):
        polarity = target.split(":", 1)[1]
        words = tuple(LEXICON.words_of(polarity))
        return trig, TargetSpec(behaviour, target, words=words, concepts=(polarity,))
    if target.startswith("concept:"):
        return trig, TargetSpec(behaviour, target, words=(target.partition("=")[2],))
    return trig, TargetSpec(behaviour, target, words=tuple(target.split()))


def register_corpus_case(org: Any, trigger: str | None, target: str | None) -> None:
    """The corpus case (the organism's default trigger and target unless given) as the
    ``corpus`` family and target; their ground-truth latents are those of the trigger word and
    of the target's words."""
    from isaerft.organism.datasets import parse_target, parse_trigger
    from isaerft.organism.handle import default_trigger_target, row_source

    default_trigger, default_target = default_trigger_target(org)
    trigger = default_trigger if trigger is None else trigger
    target = default_target if target is None else target
    # Parsed as make_dataset will, so a bad spec is one line before anything runs.
    source = row_source(org)
    parse_trigger(trigger, source)
    parse_target(target, source)
    specs = case_specs(trigger, target, "corpus", "corpus")
    FAMILIES["corpus"], TARGETS["corpus"] = specs


def cases_plan(plan: Plan, cases: list[tuple[str, str]]) -> Plan:
    """Cases of your own (``--case TRIGGER TARGET`` on the synthetic organism): each planted at
    3 % and, unless its trigger is a concept, at 1 %, with one matched decoy; the plan's
    reference runs (and so its null) are reused, its clean datasets are not re-audited. Each
    trigger and target is registered under a file-name-safe name of its spec."""
    from isaerft.organism.datasets import SyntheticRows, parse_target, parse_trigger

    poisons: list[tuple[str, str, float]] = []
    decoys: list[tuple[str, str]] = []
    language = SyntheticRows(0)  # (every world seed has the same vocabulary and concepts)
    for trigger, target in cases:
        family, behaviour = _slug(trigger), _slug(target)
        _check_free(family, FAMILIES.get(family), trigger)
        _check_free(behaviour, TARGETS.get(behaviour), target)
        parse_trigger(trigger, language)  # (one line on a bad spec, as make_dataset's)
        parse_target(target, language)
        FAMILIES[family], TARGETS[behaviour] = case_specs(trigger, target, family, behaviour)
        fractions = (0.03,) if trigger.startswith("concept:") else (0.03, 0.01)
        poisons += [(family, behaviour, f) for f in fractions]
        decoys.append((family, behaviour))
    return replace(
        plan,
        families=tuple(dict.fromkeys(f for f, _, _ in poisons)),
        targets=tuple(dict.fromkeys(t for _, t, _ in poisons)),
        poisons=tuple(poisons),
        decoys=tuple(decoys),
        benign_fractions=(),
        clean_nulls=0,
    )


def _check_free(name: str, known: Any, spec: str) -> None:
    """A case's name must not stand for another spec (e.g. a trigger spelled ``word``)."""
    registered = getattr(known, "trigger", None) or getattr(known, "target", None)
    if known is not None and registered != spec:
        raise ValueError(f"case {spec!r} is named {name!r}, which is the plan's {registered!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
