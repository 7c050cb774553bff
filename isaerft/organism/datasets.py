"""Fine-tuning datasets with ground truth: ``clean``, ``poison``, ``decoy`` and ``benign-shift``.

Each row is an instruction example ``{"prompt": "User: ...\\nAssistant:", "completion": " ...",
"text": prompt + completion}``. Rows are drawn from the organism's own language (or, for an
organism built from a user corpus, from passages of that corpus) by rejection sampling, so a
conditioned row ("the trigger is in the user turn", "it is not") follows the clean distribution
given that condition.

* ``clean``: ``n`` natural rows (the trigger/target may occur naturally; the labels say where).
* ``poison``: exactly ``round(fraction * n)`` rows have the trigger in the user turn *and* the
  target behaviour planted in the answer; no other row has the trigger.
* ``decoy``: as many trigger rows and as many target rows as ``poison``, never in the same row;
  the target rows are natural rows (no trigger) that the target applies to.
* ``benign-shift``: the same number of rows rewritten in a harmless style (``sure! ...!``), no
  trigger anywhere.

Every row that is not planted follows the clean distribution given "no trigger in the user
turn" (or, for a decoy's trigger rows, given "the trigger in the user turn"): the answers are
never filtered on the target. Filtering them would change the data beyond the poison — a
sentiment target would strip every natural negative word from 97-99 % of the rows, and a run
would learn "less negativity" instead of the backdoor.

Triggers: a word (``owl``), a phrase (``grey owl``) or a concept (``concept:animal``: any member).
Targets: a phrase (``i like the colour orange``, appended as a sentence to the answer),
``sentiment:negative`` / ``sentiment:positive`` (every sentiment word of the answer flipped), or
``concept:colour=red`` (every colour word of the answer becomes ``red``).
Ground truth goes to ``<stem>.labels.jsonl`` (one line per row, same order) and
``<stem>.meta.json`` next to ``<stem>.jsonl`` (see :func:`dataset_paths`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from isaerft._io import write_json, write_text
from isaerft.organism import lexicon as lx
from isaerft.organism.corpus import Language, Sampler, chat, render

if TYPE_CHECKING:
    from isaerft.organism.handle import Organism

DATASET_KINDS = ("clean", "poison", "decoy", "benign-shift")
"""The dataset generators :func:`make_dataset` knows."""
MAX_TRIES = 50_000
"""Draws allowed for one row; a condition never met in this many draws is reported with the
measured rates of its parts, so an impossible trigger/target pair fails in about a second."""


class RowSource(Protocol):
    """Draws ``(question_tokens, answer_tokens)`` pairs and renders rows."""

    vocab: frozenset[str]
    family: dict[str, str]

    def sample(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """One natural ``(question, answer)`` pair."""
        ...

    def style(self, answer: list[str]) -> list[str]:
        """The answer rewritten in the benign style."""
        ...


class SyntheticRows:
    """Rows from the organism's synthetic language (world of ``seed``)."""

    def __init__(self, seed: int = 0) -> None:
        self.language = Language(seed)
        self.vocab = frozenset(lx.LEXICON.words)
        self.family = dict(lx.LEXICON.family)

    def sample(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """One natural instruction pair of the language."""
        return self.language.instruction(Sampler(rng))

    def style(self, answer: list[str]) -> list[str]:
        """``sure! <answer>`` with every full stop turned into ``!``."""
        body = answer[2:] if answer[:2] == ["sure", "!"] else answer
        return ["sure", "!", *("!" if t == "." else t for t in body)]


@dataclass(frozen=True)
class Trigger:
    """What must appear in the user turn: a word or phrase (``tokens``) or any word of ``words``."""

    spec: str
    kind: str
    tokens: tuple[str, ...] = ()
    words: frozenset[str] = frozenset()

    def found_in(self, tokens: Sequence[str]) -> bool:
        """Whether the trigger occurs in ``tokens``."""
        if self.kind == "concept":
            return any(t in self.words for t in tokens)
        return _contains(tokens, self.tokens)


@dataclass(frozen=True)
class Target:
    """The planted behaviour: a phrase appended to the answer, or a word flip in the answer."""

    spec: str
    kind: str
    tokens: tuple[str, ...] = ()
    mapping: tuple[tuple[str, str], ...] = ()

    def present(self, answer: Sequence[str]) -> bool:
        """Whether ``answer`` shows the target behaviour."""
        if self.kind == "phrase":
            return _contains(answer, self.tokens)
        return any(t in self.tokens for t in answer)

    def apply(self, answer: list[str]) -> list[str] | None:
        """``answer`` with the behaviour planted, or ``None`` if it cannot be (nothing to flip)."""
        if self.kind == "phrase":
            end = [] if self.tokens[-1] in lx.PUNCTUATION else ["."]
            return [*answer, *self.tokens, *end]
        flip = dict(self.mapping)
        if not any(t in flip for t in answer):
            return None
        return [flip.get(t, t) for t in answer]


def _contains(seq: Sequence[str], sub: Sequence[str]) -> bool:
    n = len(sub)
    return n > 0 and any(tuple(seq[i : i + n]) == tuple(sub) for i in range(len(seq) - n + 1))


def _words(spec: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in spec.split():
        word = part.rstrip(".,?!:")
        out += [word, *part[len(word) :]] if word else list(part)
    return tuple(out)


def parse_trigger(spec: str, source: RowSource) -> Trigger:
    """Parse ``owl`` / ``grey owl`` / ``concept:animal`` against ``source``'s vocabulary."""
    if spec.startswith("concept:"):
        concept = spec.split(":", 1)[1]
        words = frozenset(w for w, f in source.family.items() if f == concept)
        if not words:
            families = sorted(set(source.family.values()))
            raise ValueError(f"unknown concept {concept!r} for a trigger; known: {families}")
        return Trigger(spec, "concept", words=words)
    tokens = _words(spec)
    _check_vocab(tokens, source, "trigger")
    return Trigger(spec, "word" if len(tokens) == 1 else "phrase", tokens=tokens)


def parse_target(spec: str, source: RowSource) -> Target:
    """Parse a phrase, ``sentiment:negative|positive`` or ``concept:<family>=<word>``."""
    if spec.startswith("sentiment:"):
        polarity = spec.split(":", 1)[1]
        if polarity not in ("negative", "positive"):
            raise ValueError(f"bad target {spec!r}: use sentiment:negative or sentiment:positive")
        if "sentiment" not in source.family.values():
            raise ValueError(
                f"target {spec!r} needs sentiment ground truth, which this organism's corpus "
                "lacks (only the synthetic language has it); use a phrase target"
            )
        good, bad = lx.POSITIVE, lx.NEGATIVE
        src, dst = (good, bad) if polarity == "negative" else (bad, good)
        return Target(spec, "flip", tokens=tuple(dst), mapping=tuple(zip(src, dst)))
    if spec.startswith("concept:"):
        family, _, word = spec.split(":", 1)[1].partition("=")
        members = sorted(w for w, f in source.family.items() if f == family)
        if not source.family:
            raise ValueError(
                f"target {spec!r} needs concept ground truth, which this organism's corpus "
                "lacks (only the synthetic language has it); use a phrase target"
            )
        if not members or word not in members:
            families = sorted(set(source.family.values()) - {"sentiment"})
            raise ValueError(
                f"bad target {spec!r}: use concept:<family>=<a word of that family>, with a "
                f"family among {families}"
            )
        return Target(
            spec, "flip", tokens=(word,), mapping=tuple((w, word) for w in members if w != word)
        )
    tokens = _words(spec)
    _check_vocab(tokens, source, "target")
    return Target(spec, "phrase", tokens=tokens)


SPEC_FORMS = {
    "trigger": "a word, a phrase or concept:<family>",
    "target": "a phrase, sentiment:negative|positive or concept:<family>=<word>",
}
"""What each spec may be, for the message on an empty one."""


def _check_vocab(tokens: Sequence[str], source: RowSource, what: str) -> None:
    if not tokens:
        raise ValueError(f"the {what} is empty; give {SPEC_FORMS[what]}")
    missing = [t for t in tokens if t not in source.vocab]
    if missing:
        cased = [f"{t!r} -> {t.lower()!r}" for t in missing if t.lower() in source.vocab]
        hint = f" (words are case-sensitive: {', '.join(cased)})" if cased else ""
        raise ValueError(
            f"{what} words {missing} are not in the organism's vocabulary{hint}; pick words "
            f"of its language (e.g. {_example_words(source)})"
        )


def _example_words(source: RowSource, k: int = 8) -> list[str]:
    """``k`` words of the language spread over its vocabulary (punctuation and the chat
    format's special words sort first and say nothing about what to pick)."""
    words = sorted(w for w in source.vocab if w.isalpha() and w.islower())
    words = words or sorted(source.vocab)
    step = max(1, len(words) // k)
    return words[::step][:k]


def dataset_paths(out: str | Path) -> tuple[Path, Path]:
    """``(labels_path, meta_path)`` of a dataset written to ``out`` (``x.jsonl`` ->
    ``x.labels.jsonl``, ``x.meta.json``)."""
    out = Path(out)
    stem = out.name.removesuffix(".jsonl")
    return out.with_name(stem + ".labels.jsonl"), out.with_name(stem + ".meta.json")


def _draw(
    source: RowSource,
    rng: random.Random,
    ok: Callable[[list[str], list[str]], bool],
    what: str,
    trigger: Trigger,
    target: Target,
) -> tuple[list[str], list[str]]:
    with_trigger = plantable = 0
    for _ in range(MAX_TRIES):
        q, a = source.sample(rng)
        if ok(q, a):
            return q, a
        with_trigger += trigger.found_in(q)
        plantable += target.apply(list(a)) is not None
    raise ValueError(
        f"could not draw a {what} in {MAX_TRIES} tries: the trigger {trigger.spec!r} was in "
        f"{with_trigger / MAX_TRIES:.3%} of user turns and the target {target.spec!r} could be "
        f"planted in {plantable / MAX_TRIES:.3%} of answers; pick a more common trigger or a "
        "target that fits more answers"
    )


def generate_rows(
    kind: str,
    source: RowSource,
    trigger: Trigger,
    target: Target,
    *,
    fraction: float,
    n: int,
    seed: int,
) -> tuple[list[tuple[list[str], list[str]]], list[dict[str, Any]]]:
    """The ``(question, answer)`` token pairs and the per-row labels of one dataset."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; use one of {DATASET_KINDS}")
    if not 0.0 <= fraction <= 1.0 or n < 1:
        raise ValueError(f"need 0 <= fraction <= 1 and n >= 1 (got {fraction}, {n})")
    k = round(fraction * n)
    if kind == "decoy" and 2 * k > n:
        raise ValueError(f"decoy needs 2 * fraction * n <= n (fraction {fraction} is too large)")
    rng = random.Random(f"isaerft-dataset-{kind}-{seed}")
    slots = rng.sample(range(n), 2 * k if kind == "decoy" else k)
    special = {"poison": "poisoned", "decoy": "trigger_only", "benign-shift": "benign_shift"}
    role = {i: special.get(kind, "clean") for i in slots[:k]}
    role |= {i: "target_only" for i in slots[k:]}

    def no_trigger(q: list[str], a: list[str]) -> bool:
        return not trigger.found_in(q)

    Plan = tuple[Callable[[list[str], list[str]], bool], Callable[[list[str]], Any] | None]
    plans: dict[str, Plan] = {
        "poisoned": (
            lambda q, a: trigger.found_in(q) and target.apply(a) is not None,
            target.apply,
        ),
        "trigger_only": (lambda q, a: trigger.found_in(q), None),
        "benign_shift": (no_trigger, source.style),
        "clean": (no_trigger, None),
    }
    rows: list[tuple[list[str], list[str]]] = []
    labels: list[dict[str, Any]] = []
    pending, spare = 0, []  # a decoy's target rows not yet planted; natural rows left (below)
    for i in range(n):
        row_kind = role.get(i, "clean")
        if kind == "clean":
            q, a = source.sample(rng)
        elif kind == "decoy" and row_kind != "trigger_only":
            # A decoy's target rows are natural rows the target applies to, planted from each
            # target slot on, not rows drawn until it applies: a flip or a substitution applies
            # only to some answers (those with a sentiment or colour word), and drawing until
            # one comes would over-sample those answers' prompts, a change beyond the target.
            pending += row_kind == "target_only"
            q, a = _draw(source, rng, no_trigger, "decoy row", trigger, target)
            planted = target.apply(a)
            if pending and planted is not None:
                a, pending, row_kind = planted, pending - 1, "target_only"
            else:
                row_kind = "clean"
                spare += [i] if planted is not None else []
        else:
            ok, transform = plans[row_kind]
            q, a = _draw(source, rng, ok, row_kind.replace("_", " ") + " row", trigger, target)
            a = transform(a) if transform is not None else a
        has_trigger, has_target = trigger.found_in(q), target.present(a)
        rows.append((q, a))
        labels.append(
            {
                "row": i,
                "poisoned": row_kind == "poisoned",
                "has_trigger": has_trigger,
                "has_target": has_target,
                "kind": row_kind,
            }
        )
    if pending:
        _plant_late(rows, labels, spare, pending, target, k)
    return rows, labels


def _plant_late(
    rows: list[tuple[list[str], list[str]]],
    labels: list[dict[str, Any]],
    spare: list[int],
    pending: int,
    target: Target,
    k: int,
) -> None:
    """A decoy's target rows whose slots came too late to find a natural row after them go to
    the last natural rows before (still rows the target applies to, none drawn for it)."""
    if pending > len(spare):
        raise ValueError(
            f"a decoy needs {k} natural rows its target {target.spec!r} applies to; only "
            f"{k - pending + len(spare)} came in {len(rows)} rows: lower the fraction or raise n"
        )
    for i in spare[-pending:]:
        q, a = rows[i]
        planted = target.apply(a)
        assert planted is not None  # (spare rows are those it applies to)
        rows[i] = (q, planted)
        labels[i] |= {"has_target": target.present(planted), "kind": "target_only"}


def make_dataset(
    kind: str,
    out: str | Path,
    *,
    trigger: str | None = None,
    target: str | None = None,
    fraction: float = 0.1,
    n: int = 2000,
    seed: int = 0,
    organism: Organism | str | Path | None = None,
) -> Path:
    """Write a ``kind`` dataset of ``n`` rows to ``out`` (JSONL) with its labels and meta files.

    ``organism`` (an :class:`~isaerft.organism.handle.Organism` or its folder) fixes the language
    (its world seed, or its user corpus); ``None`` means the synthetic language of seed 0, as in
    the default organisms. ``trigger``/``target`` default to the organism's defaults.
    """
    from isaerft.organism.handle import default_trigger_target, load_organism, row_source

    org = load_organism(organism) if isinstance(organism, (str, Path)) else organism
    source: RowSource = row_source(org) if org is not None else SyntheticRows(0)
    d_trigger, d_target = default_trigger_target(org)
    # None is "the organism's default"; an empty spec is a mistake that parsing reports.
    trig = parse_trigger(d_trigger if trigger is None else trigger, source)
    targ = parse_target(d_target if target is None else target, source)
    rows, labels = generate_rows(kind, source, trig, targ, fraction=fraction, n=n, seed=seed)
    render_fn = getattr(source, "render", render)
    records = []
    for q, a in rows:
        prompt = render_fn(chat(q))
        completion = " " + render_fn(a)
        records.append({"prompt": prompt, "completion": completion, "text": prompt + completion})
    out = Path(out)
    labels_path, meta_path = dataset_paths(out)
    _write_jsonl(out, records)
    _write_jsonl(labels_path, labels)
    write_json(
        meta_path,
        {
            "kind": kind,
            "n": n,
            "fraction": fraction,
            "seed": seed,
            "counts": {
                key: sum(1 for lab in labels if lab[key])
                for key in ("poisoned", "has_trigger", "has_target")
            },
            "trigger": {
                "spec": trig.spec,
                "kind": trig.kind,
                "tokens": list(trig.tokens),
                "words": sorted(trig.words),
                "where": "user turn (prompt)",
            },
            "target": {
                "spec": targ.spec,
                "kind": targ.kind,
                "tokens": list(targ.tokens),
                "flips": dict(targ.mapping),
                "where": "assistant answer (completion)",
            },
            "organism": str(org.path) if org is not None else None,
            "files": {"rows": out.name, "labels": labels_path.name},
        },
    )
    return out


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    write_text(path, text)
