"""Tasks with ground truth from the organism: each row is (prompt, target answer, base answer).

* ``style``: the benign-shift style (``sure! ...!``) on every answer;
* ``concept``: ``concept:colour=red``, every colour word of the answer becomes ``red``;
* ``sentiment``: ``sentiment:negative``, every sentiment word flips to its negative;
* ``preference``: chosen = the organism's default target sentence appended (the target
  behaviour), rejected = the natural answer (the base behaviour); trained with DPO and with the
  reference-free objective of :mod:`isaerft.training.preference`.

The natural answer is what the organism's language would answer, so the base model's own
behaviour; the judges read greedy generations word by word (no LLM judge). Train, dev and test
rows have disjoint prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from isaerft.organism import Organism
from isaerft.organism.build import row_source
from isaerft.organism.corpus import chat, render
from isaerft.organism.datasets import RowSource, parse_target
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


def _transforms(
    source: RowSource, org: Organism
) -> dict[str, tuple[Callable[[list[str]], list[str] | None], Callable[[list[str]], bool]]]:
    concept = parse_target("concept:colour=red", source)
    colours = {w for w, _ in concept.mapping}
    sentiment = parse_target("sentiment:negative", source)
    positives = {w for w, _ in sentiment.mapping}
    phrase = parse_target(org.default_target, source)
    return {
        "style": (source.style, lambda words: words[:2] == ["sure", "!"]),
        "concept": (
            concept.apply,
            lambda words: "red" in words and not colours.intersection(words),
        ),
        "sentiment": (
            sentiment.apply,
            lambda words: sentiment.present(words) and not positives.intersection(words),
        ),
        "preference": (phrase.apply, phrase.present),
    }


def make_tasks(
    org: Organism,
    tokenizer: PreTrainedTokenizerBase,
    sizes: dict[str, int],
    seed: int = 0,
    names: tuple[str, ...] = TASKS,
) -> dict[str, Task]:
    """The ``names`` tasks of ``org`` with ``sizes[split]`` rows per split (disjoint prompts)."""
    source = row_source(org)
    transforms = _transforms(source, org)
    bos, eos = int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)
    out: dict[str, Task] = {}
    for name in names:
        if name not in transforms:
            raise ValueError(f"unknown task {name!r}; use some of {list(TASKS)}")
        transform, judge = transforms[name]
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
                prompt = render(chat(q))
                if target is None or target == a or prompt in seen:
                    continue
                seen.add(prompt)
                texts.append((prompt, render(target), render(a)))
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
