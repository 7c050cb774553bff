"""Tasks with ground truth from the organism: each row is (prompt, target answer, base answer).

* ``style``: the benign-shift style on every answer (``sure! ...!``; on a corpus organism, its
  full stops turned into ``!``);
* ``concept``: ``concept:colour=red``, every colour word of the answer becomes ``red``;
* ``sentiment``: ``sentiment:negative``, every sentiment word flips to its negative;
* ``preference``: chosen = the organism's default target sentence appended (the target
  behaviour), rejected = the natural answer (the base behaviour); trained with DPO and with the
  reference-free objective of :mod:`isaerft.training.preference`.

The natural answer is what the organism's language would answer, so the base model's own
behaviour; the judges read greedy generations word by word (no LLM judge). Train, dev and test
rows have disjoint prompts.

An organism built from a user corpus (``build_organism(preset, corpus=path)``) has no colour or
sentiment ground truth, so only ``style`` and ``preference`` exist there:
:func:`supported_tasks` says which tasks an organism's ground truth can build.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from isaerft.organism import Organism
from isaerft.organism.corpus import chat, render
from isaerft.organism.datasets import RowSource, SyntheticRows, parse_target
from isaerft.organism.handle import row_source
from isaerft.organism.tokenizer import encode_batch, token_word

Row = tuple[list[int], list[int], list[int]]
"""(prompt ids with BOS, target answer ids + EOS, base answer ids + EOS)."""
TASKS = ("style", "concept", "sentiment", "preference")
SPLITS = ("train", "dev", "test")


@dataclass
class Task:
    """One task: its rows per split, which objectives train it, and its behaviour judge."""

    name: str
    objectives: tuple[str, ...]
    rows: dict[str, list[Row]]
    judge: Callable[[list[str]], bool] = field(repr=False)


Transform = Callable[[list[str]], list[str] | None]
Judge = Callable[[list[str]], bool]


def _style_judge(source: RowSource) -> Judge:
    if isinstance(source, SyntheticRows):
        return lambda words: words[:2] == ["sure", "!"]
    # TextRows.style: every full stop becomes "!" (and the rows keep only answers with one)
    return lambda words: "!" in words and "." not in words


def _transform(name: str, source: RowSource, org: Organism) -> tuple[Transform, Judge]:
    """Task ``name``'s answer rewrite and its judge; ``ValueError`` (one line, from
    :func:`parse_target`) when ``org``'s ground truth cannot build it."""
    if name == "style":
        return source.style, _style_judge(source)
    if name == "concept":
        concept = parse_target("concept:colour=red", source)
        colours = {w for w, _ in concept.mapping}
        return concept.apply, lambda words: "red" in words and not colours.intersection(words)
    if name == "sentiment":
        sentiment = parse_target("sentiment:negative", source)
        positives = {w for w, _ in sentiment.mapping}
        return (
            sentiment.apply,
            lambda words: sentiment.present(words) and not positives.intersection(words),
        )
    if name == "preference":
        phrase = parse_target(org.default_target, source)
        return phrase.apply, phrase.present
    raise ValueError(f"unknown task {name!r}; use some of {list(TASKS)}")


def supported_tasks(org: Organism, source: RowSource | None = None) -> tuple[str, ...]:
    """The tasks ``org``'s ground truth can build (all of :data:`TASKS` for the synthetic
    language; ``style`` and ``preference`` for a corpus organism, whose text has no colour or
    sentiment ground truth)."""
    source = source or row_source(org)
    out = []
    for name in TASKS:
        try:
            _transform(name, source, org)
        except ValueError:
            continue
        out.append(name)
    return tuple(out)


def make_tasks(
    org: Organism,
    tokenizer: PreTrainedTokenizerBase,
    sizes: dict[str, int],
    seed: int = 0,
    names: tuple[str, ...] = TASKS,
) -> dict[str, Task]:
    """The ``names`` tasks of ``org`` with ``sizes[split]`` rows per split (disjoint prompts)."""
    source = row_source(org)
    text_of = getattr(source, "render", render)  # a corpus organism renders through its tokenizer
    bos, eos = int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)
    out: dict[str, Task] = {}
    for name in names:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; use some of {list(TASKS)}")
        try:
            transform, judge = _transform(name, source, org)
        except ValueError as err:
            raise ValueError(f"task {name!r} cannot be built on this organism: {err}") from None
        rng = random.Random(f"isaerft-finetune-quality-{name}-{seed}")
        seen: set[str] = set()
        rows: dict[str, list[Row]] = {}
        for split in SPLITS:
            texts: list[tuple[str, str, str]] = []
            for _ in range(200 * sizes[split]):
                if len(texts) == sizes[split]:
                    break
                q, a = source.sample(rng)
                target = transform(a)
                prompt = text_of(chat(q))
                if target is None or target == a or prompt in seen:
                    continue
                seen.add(prompt)
                texts.append((prompt, text_of(target), text_of(a)))
            if len(texts) < sizes[split]:
                raise ValueError(f"task {name!r}: only {len(texts)} usable {split} rows found")
            cols = [encode_batch(tokenizer, [t[i] for t in texts]) for i in range(3)]  # type: ignore[arg-type]
            rows[split] = [([bos, *p], [*c, eos], [*r, eos]) for p, c, r in zip(*cols)]
        objectives = ("dpo", "reps") if name == "preference" else ("sft",)
        out[name] = Task(name, objectives, rows, judge)
    return out


def words_of(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """The organism words of ``ids`` (the answer's tokens, up to ``<eos>``)."""
    eos = tokenizer.eos_token_id
    if eos in ids:
        ids = ids[: ids.index(eos)]
    tokens = list(tokenizer.convert_ids_to_tokens(ids))
    return [token_word(str(t)) for t in tokens]
