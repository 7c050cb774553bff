"""A seeded generator of the organism's synthetic language: facts, short stories and instructions.

Documents are produced as token lists (one word or punctuation mark per token), so every token's
ground-truth concept labels come straight from :data:`~isaerft.organism.lexicon.LEXICON`. A
:class:`World` fixes the facts of one seed (the owl is grey and lives in the forest...), which the
language model has to memorise. The generator records the log-probability of each of its own
random choices, so it can report the corpus' entropy floor (an upper bound on the true entropy
rate, tight when different choices never produce the same text).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from isaerft.organism import lexicon as lx

T = TypeVar("T")
Tokens = list[str]

_NO_SPACE_BEFORE = frozenset(lx.PUNCTUATION) | {lx.NEWLINE}
_FEMALE = frozenset(
    {"Anna", "Clara", "Ella", "Grace", "Iris", "Lily", "Nora", "Rosa", "Zoe", "Mia"}
)
_PLURAL = {s: p for s, p in (*lx.ANIMALS, *lx.FOODS)}
SOUND = {a: snd for (a, _), snd in zip(lx.ANIMALS, lx.SOUNDS)}
"""Each animal's sound verb (``owl`` -> ``hoots``); fixed for every seed."""
_THINGS = (*(a for a, _ in lx.ANIMALS), *lx.PLACES, *(f for f, _ in lx.FOODS), *lx.OBJECTS)
DOC_KINDS = {"facts": 0.25, "story": 0.30, "instruction": 0.45}
"""Mixture weights of the three document kinds in the pre-training corpus."""


def render(tokens: Sequence[str]) -> str:
    """Join tokens into text: a space before each word, none before punctuation or after a newline."""
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i > 0 and tok not in _NO_SPACE_BEFORE and tokens[i - 1] != lx.NEWLINE:
            out.append(" ")
        out.append(tok)
    return "".join(out)


def article(word: str) -> Tokens:
    """``["an", word]`` before a vowel, else ``["a", word]``."""
    return ["an" if word[0] in "aeiou" else "a", word]


@dataclass(frozen=True)
class World:
    """The fixed facts of one seed: each animal's colour, home and food, each person's job and town."""

    colour: dict[str, str]
    home: dict[str, str]
    food: dict[str, str]
    job: dict[str, str]
    town: dict[str, str]

    @classmethod
    def make(cls, seed: int) -> World:
        """Draw the world of ``seed`` (independent of the document stream's randomness)."""
        rng = random.Random(f"isaerft-world-{seed}")
        animals = [a for a, _ in lx.ANIMALS]
        foods = [p for _, p in lx.FOODS] + list(lx.MASS_FOODS)
        return cls(
            colour={a: rng.choice(lx.COLOURS) for a in animals},
            home={a: rng.choice(lx.PLACES) for a in animals},
            food={a: rng.choice(foods) for a in animals},
            job={n: rng.choice(lx.JOBS) for n in lx.NAMES},
            town={n: rng.choice(lx.PLACES) for n in lx.NAMES},
        )


class Sampler:
    """A ``random.Random`` that adds the log-probability of every choice it makes to ``logp``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.logp = 0.0

    def pick(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        """Choose one option (uniformly, or with ``weights``) and record its log-probability."""
        if weights is None:
            self.logp -= math.log(len(options))
            return options[self.rng.randrange(len(options))]
        i = self.rng.choices(range(len(options)), weights=weights)[0]
        self.logp += math.log(weights[i] / sum(weights))
        return options[i]

    def coin(self, p: float) -> bool:
        """True with probability ``p``."""
        return bool(self.pick((True, False), (p, 1.0 - p)))

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in ``[lo, hi]``."""
        return self.pick(range(lo, hi + 1))


@dataclass(frozen=True)
class Document:
    """One generated document: its tokens, kind, and (for instructions) where the answer starts."""

    tokens: tuple[str, ...]
    kind: str
    logp: float
    n_prompt: int = 0

    @property
    def text(self) -> str:
        """The rendered text."""
        return render(self.tokens)

    @property
    def prompt(self) -> str:
        """``"User: ...\\nAssistant:"`` for instructions (empty for other kinds)."""
        return render(self.tokens[: self.n_prompt])

    @property
    def completion(self) -> str:
        """The assistant answer with its leading space (the whole text for other kinds)."""
        if not self.n_prompt:
            return self.text
        return " " + render(self.tokens[self.n_prompt :])


class Language:
    """Generates documents of the synthetic language for one world seed."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.world = World.make(seed)
        self.animals = [a for a, _ in lx.ANIMALS]

    # -- sentences ---------------------------------------------------------------------------
    def fact(self, s: Sampler) -> Tokens:
        """One encyclopedic sentence (world facts, sums, weather, opinions)."""
        kinds = ("colour", "home", "food", "job", "town", "likes", "sum", "wx", "does", "work", "drink",
                 "sound", "sound")  # fmt: skip
        w, kind = self.world, s.pick(kinds)
        # Only draw what the sentence uses: an unused draw would inflate the entropy floor.
        animal_kinds = ("colour", "home", "food", "likes", "does", "sound")
        a = s.pick(self.animals) if kind in animal_kinds else ""
        n = s.pick(lx.NAMES) if kind in ("job", "town", "drink") else ""
        if kind == "colour":
            return ["the", a, "is", w.colour[a], "."]
        if kind == "home":
            return ["the", a, "lives", "in", "the", w.home[a], "."]
        if kind == "food":
            return ["the", a, "eats", w.food[a], "."]
        if kind == "job":
            return [n, "is", *article(w.job[n]), "."]
        if kind == "town":
            return [n, "lives", "in", "the", w.town[n], "."]
        if kind == "likes":
            return ["the", _PLURAL[a], "like", "to", s.pick(lx.ACTIONS)[0], "."]
        if kind == "sound":
            return ["the", a, SOUND[a], "."]
        if kind == "does":
            return ["the", a, s.pick(lx.ACTIONS)[1], "in", "the", w.home[a], "."]
        if kind == "work":
            return ["the", s.pick(lx.JOBS), s.pick(lx.ACTIONS)[1], "every", s.pick(lx.TIMES), "."]
        if kind == "drink":
            return [n, "likes", s.pick(lx.DRINKS), "."]
        if kind == "sum":
            x, y = self._addends(s)
            return [lx.NUMBERS[x], "plus", lx.NUMBERS[y], "is", lx.NUMBERS[x + y], "."]
        return ["it", "is", s.pick(lx.WEATHER), "in", "the", s.pick(lx.PLACES), "today", "."]

    def _addends(self, s: Sampler) -> tuple[int, int]:
        x = s.randint(0, 6)
        return x, s.randint(0, 6)

    def opinion(self, s: Sampler, thing: str, positive: bool) -> Tokens:
        """``i think the X is wonderful .`` with a positive or negative sentiment word."""
        words = lx.POSITIVE if positive else lx.NEGATIVE
        out = ["i", "think", "the", thing, "is", s.pick(words), "."]
        if s.coin(0.4):
            out += ["it", "is", "very", s.pick(words), "."]
        return out

    def story(self, s: Sampler, hero: str | None = None, n_events: int | None = None) -> Tokens:
        """A short story about an animal (given or random) or a person."""
        w = self.world
        if hero is None:
            hero = s.pick(self.animals) if s.coin(0.6) else s.pick(lx.NAMES)
        if hero in w.colour:
            name = s.pick(lx.NAMES)
            size = s.pick(lx.SIZES)
            out = ["once", "upon", "a", "time", ",", "there", "was", *article(size)]
            out += [w.colour[hero], hero, "named", name, "."]
            out += [name, "lived", "in", "the", w.home[hero], "."]
        else:
            name = hero
            out = ["once", "upon", "a", "time", ",", "there", "was", *article(w.job[name])]
            out += ["named", name, ".", name, "lived", "in", "the", w.town[name], "."]
        he, his = ("she", "her") if name in _FEMALE else ("he", "his")
        for _ in range(n_events if n_events is not None else s.randint(2, 4)):
            out += self._event(s, name, he, his)
        out += ["in", "the", "end", ",", name, "was", s.pick(lx.EMOTIONS), "."]
        return [*out, "the", "end", "."] if s.coin(0.5) else out

    def _event(self, s: Sampler, name: str, he: str, his: str) -> Tokens:
        kind = s.pick(("feel", "want", "go", "meet", "find", "eat", "weather", "day"))
        if kind == "feel":
            return ["one", s.pick(lx.TIMES), ",", name, "felt", s.pick(lx.EMOTIONS), "."]
        if kind == "want":
            return [he, "wanted", "to", s.pick(lx.ACTIONS)[0], "."]
        if kind == "go":
            go = ["so", he, "went", "to", "the", s.pick(lx.PLACES)]
            return [*go, "by", s.pick(lx.VEHICLES), "."] if s.coin(0.5) else [*go, "."]
        if kind == "meet":
            other = s.pick(self.animals)
            met = ["there", ",", he, "met", *article(other), ".", "the", other, SOUND[other], "."]
            return [*met, "they", s.pick(lx.ACTIONS)[2], "together", "."]
        if kind == "find":
            thing = [*article(s.pick(lx.SIZES + lx.COLOURS)), s.pick(lx.OBJECTS)]
            return [name, "found", *thing, "near", "the", s.pick(lx.PLACES), "."]
        if kind == "eat":
            food = s.pick((*lx.MASS_FOODS, *(p for _, p in lx.FOODS)))
            return [name, "ate", "some", food, "with", his, "friend", "."]
        if kind == "weather":
            return ["the", "weather", "was", s.pick(lx.WEATHER), "."]
        good = s.coin(0.6)
        return ["it", "was", *article(s.pick(lx.POSITIVE if good else lx.NEGATIVE)), "day", "."]

    # -- instructions --------------------------------------------------------------------------
    def instruction(self, s: Sampler) -> tuple[Tokens, Tokens]:
        """A ``(question, answer)`` pair; wrap with :func:`chat` for the ``User:/Assistant:`` form."""
        w = self.world
        pre: Tokens = []
        if s.coin(0.3):
            kind = s.pick(("hello", "like", "name", "today", "live"))
            pre = {
                "hello": lambda: ["hello", "!"],
                "like": lambda: ["i", "like", "the", s.pick(self.animals), "."],
                "name": lambda: ["my", "name", "is", s.pick(lx.NAMES), "."],
                "today": lambda: ["today", "it", "is", s.pick(lx.WEATHER), "."],
                "live": lambda: ["i", "live", "near", "the", s.pick(lx.PLACES), "."],
            }[kind]()
        kind = s.pick(
            ("colour", "home", "food", "story", "feel", "sum", "opinion", "count", "describe",
             "weather", "who", "repeat", "advice", "sound"),
        )  # fmt: skip
        a = s.pick(self.animals) if kind in ("colour", "home", "food", "sound") else ""
        n = s.pick(lx.NAMES) if kind in ("feel", "who") else ""
        q: Tokens
        ans: Tokens
        if kind == "colour":
            q, ans = ["what", "colour", "is", "the", a, "?"], ["the", a, "is", w.colour[a], "."]
        elif kind == "home":
            q = ["where", "does", "the", a, "live", "?"]
            ans = ["the", a, "lives", "in", "the", w.home[a], "."]
        elif kind == "food":
            q, ans = ["what", "does", "the", a, "eat", "?"], ["the", a, "eats", w.food[a], "."]
        elif kind == "sound":
            q = ["what", "sound", "does", "the", a, "make", "?"]
            ans = ["the", a, SOUND[a], "."]
        elif kind == "story":
            hero = s.pick(self.animals) if s.coin(0.6) else s.pick(lx.NAMES)
            about = article(hero) if hero in w.colour else [hero]
            q = ["tell", "me", "a", "story", "about", *about, "."]
            ans = self.story(s, hero, n_events=s.randint(1, 2))
        elif kind == "feel":
            q, ans = ["how", "does", n, "feel", "today", "?"], [n, "feels", s.pick(lx.EMOTIONS)]
            ans += (
                ["today", "because", "it", "is", s.pick(lx.WEATHER), "."] if s.coin(0.5) else ["."]
            )
        elif kind == "sum":
            x, y = self._addends(s)
            q = ["what", "is", lx.NUMBERS[x], "plus", lx.NUMBERS[y], "?"]
            ans = [lx.NUMBERS[x], "plus", lx.NUMBERS[y], "is", lx.NUMBERS[x + y], "."]
        elif kind == "opinion":
            thing = s.pick(_THINGS)
            q = ["what", "do", "you", "think", "of", "the", thing, "?"]
            ans = self.opinion(s, thing, positive=s.coin(0.6))
        elif kind == "count":
            k = s.randint(2, 6)
            q, ans = ["count", "to", lx.NUMBERS[k], "."], []
            for i in range(1, k + 1):
                ans += [lx.NUMBERS[i], "," if i < k else "."]
        elif kind == "describe":
            place = s.pick(lx.PLACES)
            q = ["describe", "the", place, "."]
            ans = ["the", place, "is", s.pick(lx.POSITIVE if s.coin(0.6) else lx.NEGATIVE), "."]
            locals_ = [x for x in self.animals if w.home[x] == place]
            if locals_:
                ans += ["many", _PLURAL[s.pick(locals_)], "live", "there", "."]
        elif kind == "weather":
            place, wx = s.pick(lx.PLACES), s.pick(lx.WEATHER)
            q = ["is", "it", wx, "in", "the", place, "today", "?"]
            actual = wx if s.coin(0.5) else s.pick([x for x in lx.WEATHER if x != wx])
            ans = ["yes" if actual == wx else "no", ",", "it", "is", actual, "in", "the", place]
            ans += ["today", "."]
        elif kind == "who":
            q = ["who", "is", n, "?"]
            ans = [n, "is", *article(w.job[n]), "who", "lives", "in", "the", w.town[n], "."]
        elif kind == "repeat":
            ans = self.fact(s)
            q = ["repeat", "after", "me", ":", *ans]
        else:
            q = ["what", "should", "i", "do", "today", "?"]
            ans = ["you", "should", "visit", "the", s.pick(lx.PLACES), "."]
            if s.coin(0.5):
                ans = ["you", "should", s.pick(lx.ACTIONS)[0], "in", "the", s.pick(lx.PLACES), "."]
        if s.coin(0.1):
            ans = ["sure", "!", *ans]
        return pre + q, ans

    def document(self, s: Sampler) -> Document:
        """One pre-training document of a random kind (see :data:`DOC_KINDS`)."""
        kind = s.pick(tuple(DOC_KINDS), tuple(DOC_KINDS.values()))
        if kind == "facts":
            tokens = [t for _ in range(s.randint(2, 5)) for t in self.fact(s)]
            return Document(tuple(tokens), kind, s.logp)
        if kind == "story":
            return Document(tuple(self.story(s)), kind, s.logp)
        q, ans = self.instruction(s)
        prompt = chat(q)
        return Document(tuple(prompt + ans), kind, s.logp, n_prompt=len(prompt))

    def documents(self, n: int, stream_seed: int | str) -> Iterator[Document]:
        """``n`` documents from the stream ``stream_seed`` (each with its own log-probability)."""
        rng = random.Random(f"isaerft-docs-{self.seed}-{stream_seed}")
        for _ in range(n):
            yield self.document(Sampler(rng))


def chat(question: Sequence[str]) -> Tokens:
    """``User: <question>\\nAssistant:`` as tokens."""
    return ["User", ":", *question, lx.NEWLINE, "Assistant", ":"]
