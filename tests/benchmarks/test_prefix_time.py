"""The prefix-cache timing path: both runs train through isaerft.training (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks.step_time.prefix_time import PREFIX_SHAPES, PrefixShape, measure_prefix_cache


def test_cached_and_uncached_runs_train_the_same_steps() -> None:
    shape = PrefixShape(
        n_layers=3,
        hook_layer=2,
        d_model=32,
        n_heads=4,
        expansion=2,
        k=4,
        rows=24,
        batch_size=8,
        epochs=1.0,
    )
    result = measure_prefix_cache([shape], "cpu", repeats=1)
    assert result["benchmark"] == "step_time_prefix_cache"
    (entry,) = result["shapes"]
    assert entry["shape"]["hook_depth"] == pytest.approx(2 / 3)
    assert entry["shape"]["hook_name"] == "blocks.2.hook_resid_pre"
    steps = {r["steps"] for runs in entry["runs"].values() for r in runs}
    assert steps == {3}
    assert entry["ratios"]["prefix_cache_speedup_total"] > 0
    assert entry["target"]["prefix_cache_speedup_total_min"] == 1.4
    assert isinstance(entry["target"]["met"], bool)


def test_default_shapes_have_their_hook_at_two_thirds_depth() -> None:
    assert len(PREFIX_SHAPES) >= 1
    for shape in PREFIX_SHAPES:
        assert shape.hook_depth == pytest.approx(2 / 3)
        assert shape.epochs == 3.0
