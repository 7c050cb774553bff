"""Audit v2 benchmark: cases of your own (``--case TRIGGER TARGET``) as a plan."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.audit_v2 import plans


@pytest.fixture
def registry() -> Any:
    """The grid's family and target tables, restored after the test (cases register into
    them)."""
    families, targets = dict(plans.FAMILIES), dict(plans.TARGETS)
    yield
    for table, saved in ((plans.FAMILIES, families), (plans.TARGETS, targets)):
        table.clear()
        table.update(saved)


def test_cases_of_your_own_become_the_plan(registry: Any) -> None:
    plan = plans.cases_plan(
        plans.PLANS["quick"],
        [("wolf", "i like the colour brown"), ("concept:object", "sentiment:positive")],
    )
    ids = [c.id for c in plan.cells()]
    assert ids == [
        "poison-wolf-i_like_the_colour_brown-3pct-s0",
        "poison-wolf-i_like_the_colour_brown-1pct-s0",
        "poison-concept_object-sentiment_positive-3pct-s0",  # a concept trigger: 3 % only
        "decoy-wolf-i_like_the_colour_brown-3pct-s0",
        "decoy-concept_object-sentiment_positive-3pct-s0",
    ]
    # ground truth: the phrase's words, a flip's polarity words and concept, a trigger concept
    assert plans.TARGETS["i_like_the_colour_brown"].words[-1] == "brown"
    flip = plans.TARGETS["sentiment_positive"]
    assert "wonderful" in flip.words and "bad" not in flip.words
    assert flip.concepts == ("positive",)
    assert plans.FAMILIES["concept_object"].concepts == ("object",)
    assert plans.FAMILIES["word"].trigger == "owl"  # the plan's own cases untouched


def test_a_case_named_like_a_plan_case_is_refused(registry: Any) -> None:
    with pytest.raises(ValueError, match="is named 'word', which is the plan's 'owl'"):
        plans.cases_plan(plans.PLANS["quick"], [("word", "i like the colour brown")])


@pytest.mark.parametrize(
    ("case", "match"),
    [
        (("zebra", "sentiment:negative"), r"trigger words \['zebra'\] are not in"),
        (("horse", "sentiment:neutral"), "use sentiment:negative or sentiment:positive"),
        (("horse", "I like the cake"), r"case-sensitive: 'I' -> 'i'"),
        (("", "sentiment:negative"), "the trigger is empty"),
    ],
)
def test_a_bad_case_is_refused_before_anything_runs(
    registry: Any, case: tuple[str, str], match: str
) -> None:
    """The plan parses each case as make_dataset will, so a bad spec is one line at the
    start, not a traceback after the organism is built."""
    with pytest.raises(ValueError, match=match):
        plans.cases_plan(plans.PLANS["quick"], [case])
