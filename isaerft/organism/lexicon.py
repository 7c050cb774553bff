"""The organism's vocabulary: concept families, inflections and the ground-truth word -> concept map.

Every word belongs to exactly one *family* (its concept, e.g. ``animal``); inflected forms carry
extra *tags* (``plural``, ``past``...). Concept labels of a token are ``[family, *tags]``.
The language is lower-case except names (``Anna``) and the two role words ``User`` /
``Assistant``, so one word is always one token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Content families: (singular, plural) for countable nouns.
ANIMALS: tuple[tuple[str, str], ...] = (
    ("cat", "cats"), ("dog", "dogs"), ("fox", "foxes"), ("owl", "owls"), ("bear", "bears"),
    ("wolf", "wolves"), ("rabbit", "rabbits"), ("horse", "horses"), ("mouse", "mice"),
    ("frog", "frogs"), ("duck", "ducks"), ("goat", "goats"), ("cow", "cows"), ("pig", "pigs"),
    ("lion", "lions"), ("tiger", "tigers"), ("eagle", "eagles"), ("snake", "snakes"),
    ("turtle", "turtles"), ("whale", "whales"), ("bee", "bees"), ("crow", "crows"),
    ("squirrel", "squirrels"), ("monkey", "monkeys"),
)  # fmt: skip
# Each animal's own sound (the next word after an animal is often its sound, which makes every
# animal's identity matter to the model as it does for words in natural language).
SOUNDS = (
    "meows", "barks", "yelps", "hoots", "growls", "howls", "thumps", "neighs", "squeaks",
    "croaks", "quacks", "bleats", "moos", "oinks", "roars", "snarls", "screeches", "hisses",
    "snaps", "whistles", "buzzes", "caws", "chatters", "shrieks",
)  # fmt: skip
FOODS: tuple[tuple[str, str], ...] = (
    ("apple", "apples"), ("carrot", "carrots"), ("berry", "berries"), ("nut", "nuts"),
    ("cookie", "cookies"), ("grape", "grapes"), ("pear", "pears"), ("plum", "plums"),
    ("egg", "eggs"), ("bean", "beans"), ("seed", "seeds"), ("mushroom", "mushrooms"),
)  # fmt: skip
MASS_FOODS = ("bread", "cheese", "soup", "rice", "honey", "corn", "cake", "pie", "grass", "fish")
DRINKS = ("milk", "tea", "water", "juice", "lemonade")
COLOURS = (
    "red", "blue", "green", "yellow", "white", "black", "brown", "orange", "purple", "pink",
    "grey", "golden",
)  # fmt: skip
PLACES = (
    "forest", "river", "village", "city", "garden", "mountain", "beach", "market", "school",
    "farm", "castle", "lake", "field", "island", "valley", "bridge", "library", "kitchen",
    "park", "harbor",
)  # fmt: skip
WEATHER = ("sunny", "rainy", "snowy", "windy", "cloudy", "foggy", "stormy", "cold", "warm", "hot")
EMOTIONS = (
    "happy", "sad", "angry", "calm", "scared", "proud", "tired", "excited", "lonely", "curious",
    "brave", "nervous", "cheerful", "gloomy", "surprised", "worried",
)  # fmt: skip
# Sentiment antonym pairs: index i of POSITIVE flips to index i of NEGATIVE and back.
POSITIVE = ("good", "wonderful", "lovely", "nice", "great", "beautiful", "pleasant", "amazing")
NEGATIVE = ("bad", "terrible", "awful", "nasty", "horrible", "ugly", "unpleasant", "dreadful")
NUMBERS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
)  # fmt: skip
NAMES = (
    "Anna", "Ben", "Clara", "David", "Ella", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lily",
    "Max", "Nora", "Oscar", "Rosa", "Sam", "Tom", "Zoe", "Leo", "Mia",
)  # fmt: skip
JOBS = (
    "baker", "farmer", "teacher", "doctor", "sailor", "king", "queen", "knight", "wizard",
    "painter", "fisher", "singer",
)  # fmt: skip
OBJECTS = (
    "ball", "box", "book", "lamp", "hat", "key", "cup", "chair", "door", "boat", "kite", "rope",
    "basket", "bell", "candle", "coin", "map", "drum", "shoe", "bag", "violin", "clock",
)  # fmt: skip
VEHICLES = ("car", "bus", "train", "ship", "bike", "cart", "plane", "wagon")
TIMES = (
    "morning", "afternoon", "evening", "night", "winter", "summer", "spring", "autumn",
)  # fmt: skip
SIZES = ("big", "small", "little", "old", "young", "tall", "tiny", "huge", "fast", "slow")
# Activity verbs: (base, third person singular, past).
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("run", "runs", "ran"), ("jump", "jumps", "jumped"), ("swim", "swims", "swam"),
    ("sing", "sings", "sang"), ("play", "plays", "played"), ("walk", "walks", "walked"),
    ("sleep", "sleeps", "slept"), ("dance", "dances", "danced"), ("cook", "cooks", "cooked"),
    ("paint", "paints", "painted"), ("climb", "climbs", "climbed"), ("dig", "digs", "dug"),
    ("build", "builds", "built"), ("write", "writes", "wrote"), ("draw", "draws", "drew"),
    ("hide", "hides", "hid"),
)  # fmt: skip
# Grammar verbs used by the templates (not a concept the SAE is asked about, but labelled).
VERBS = (
    "is", "was", "lives", "live", "lived", "eats", "eat", "ate", "likes", "like", "feels", "feel",
    "felt", "wanted", "went", "met", "found", "think", "do", "does", "tell", "count", "describe",
    "repeat", "visit", "should", "plus", "make",
)  # fmt: skip
FUNCTION = (
    "the", "a", "an", "so", "because", "of", "in", "to", "with", "near", "by", "it", "he", "she",
    "they", "his", "her", "there", "what", "where", "who", "how", "me", "you", "i", "my", "very",
    "some", "many", "every", "once", "upon", "time", "named", "about", "after", "today", "day",
    "end", "story", "friend", "together", "weather", "colour", "hello", "sure", "yes", "no",
    "name", "sound",
)  # fmt: skip
ROLES = ("User", "Assistant")
PUNCTUATION = (".", ",", "?", "!", ":")
NEWLINE = "\n"


@dataclass(frozen=True)
class Lexicon:
    """Word -> concept labels for the synthetic language (one family per word, plus tags)."""

    family: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lemma: Mapping[str, str] = field(default_factory=dict)

    def concepts(self, word: str) -> tuple[str, ...]:
        """Ground-truth concept labels of ``word``: its family then its tags (empty if unknown)."""
        fam = self.family.get(word)
        if fam is None:
            return ()
        return (fam, *self.tags.get(word, ()))

    def words_of(self, concept: str) -> list[str]:
        """All words whose labels include ``concept`` (a family or a tag), in lexicon order."""
        return [w for w in self.family if concept in self.concepts(w)]

    @property
    def families(self) -> list[str]:
        """Concept families, in first-seen order."""
        return list(dict.fromkeys(self.family.values()))

    @property
    def words(self) -> list[str]:
        """Every word of the language, in lexicon order."""
        return list(self.family)


def _build() -> Lexicon:
    family: dict[str, str] = {}
    tags: dict[str, tuple[str, ...]] = {}
    lemma: dict[str, str] = {}

    def add(word: str, fam: str, *word_tags: str, base: str | None = None) -> None:
        if word in family:  # first family wins (e.g. "like" is a verb before a function word)
            return
        family[word] = fam
        tags[word] = tuple(word_tags)
        lemma[word] = base or word

    for sing, _ in ANIMALS:
        add(sing, "animal")
    for sing, _ in FOODS:
        add(sing, "food")
    for word in MASS_FOODS:
        add(word, "food")
    for sing, plur in ANIMALS:
        add(plur, "animal", "plural", base=sing)
    for sing, plur in FOODS:
        add(plur, "food", "plural", base=sing)
    for fam, words in (
        ("drink", DRINKS), ("colour", COLOURS), ("place", PLACES), ("weather", WEATHER),
        ("emotion", EMOTIONS), ("number", NUMBERS), ("name", NAMES), ("job", JOBS),
        ("object", OBJECTS), ("vehicle", VEHICLES), ("time", TIMES), ("size", SIZES),
    ):  # fmt: skip
        for word in words:
            add(word, fam)
    for word in SOUNDS:
        add(word, "sound")
    for word in POSITIVE:
        add(word, "sentiment", "positive")
    for word in NEGATIVE:
        add(word, "sentiment", "negative")
    for base, third, past in ACTIONS:
        add(base, "action", base=base)
        add(third, "action", base=base)
        add(past, "action", "past", base=base)
    for word in VERBS:
        add(word, "verb")
    for word in FUNCTION:
        add(word, "function")
    for word in ROLES:
        add(word, "role")
    for word in PUNCTUATION:
        add(word, "punctuation")
    add(NEWLINE, "punctuation", "newline")
    return Lexicon(family=family, tags=tags, lemma=lemma)


LEXICON = _build()
"""The lexicon of the synthetic language."""

FLIP_SENTIMENT = {**dict(zip(POSITIVE, NEGATIVE)), **dict(zip(NEGATIVE, POSITIVE))}
"""Sentiment antonyms used by the ``sentiment:`` flip targets."""
