"""The audit-poison grid: cells, splits, and bad grids."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.audit_poison.grid import DEV_FAMILY, FULL, GRIDS, QUICK, Cell, Grid


def test_full_grid_is_the_issues_grid() -> None:
    assert FULL.fractions == (0.001, 0.003, 0.01, 0.03, 0.1)
    assert set(FULL.families) == {"word", "phrase", "concept"}
    assert set(FULL.targets) == {"phrase", "flip"}
    assert set(FULL.controls) == {"clean", "decoy", "benign-shift"}
    assert len(FULL.seeds) >= 3
    cells = FULL.cells()
    assert len({c.id for c in cells}) == len(cells)
    poison = [c for c in cells if c.kind == "poison"]
    assert len(poison) == 5 * 3 * 2 * len(FULL.seeds)
    assert sum(c.kind == "clean" for c in cells) == len(FULL.seeds)


def test_only_the_dev_family_is_dev() -> None:
    splits = {c.family: c.split for c in FULL.cells()}
    assert splits[DEV_FAMILY] == "dev"
    assert {s for f, s in splits.items() if f != DEV_FAMILY} == {"held_out"}
    assert QUICK.families[0] == DEV_FAMILY and len(QUICK.families) > 1
    assert set(GRIDS) == {"quick", "full"}


def test_cell_ids_are_file_safe() -> None:
    cell = Cell("poison", "word", "phrase", 0.003, 2)
    assert cell.id == "poison-word-phrase-0p3pct-s2"
    assert cell.to_dict()["split"] == "dev"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"families": ("nope",)}, "family 'nope'"),
        ({"targets": ("nope",)}, "target 'nope'"),
        ({"controls": ("nope",)}, "control 'nope'"),
        ({"fractions": (0.9,)}, "fractions"),
        ({"n_reference_runs": 2}, "n_reference_runs"),
        ({"seeds": ()}, "seeds"),
    ],
)
def test_bad_grids_are_refused(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(QUICK, **change)


def test_grid_json_names_the_specs() -> None:
    data = Grid("x", (0.1,), ("word",), ("flip",)).to_dict()
    assert data["families"]["word"]["trigger"] == "owl"
    assert data["targets"]["flip"]["target"] == "sentiment:negative"
    assert data["dev_family"] == DEV_FAMILY


def test_command_line_overrides_build_a_valid_grid() -> None:
    import argparse

    from benchmarks.audit_poison.run import _grid_from_args

    args = argparse.Namespace(
        mode="full", seeds=[4, 5], families=None, targets=["flip"], fractions=None,
        reference_runs=4, no_tune=True,
    )  # fmt: skip
    grid = _grid_from_args(args)
    assert grid.seeds == (4, 5) and grid.targets == ("flip",)
    assert grid.n_reference_runs == 4 and grid.tune is False
    assert grid.fractions == FULL.fractions
    bad = argparse.Namespace(**{**vars(args), "families": ["nope"]})
    with pytest.raises(ValueError, match="family 'nope'"):
        _grid_from_args(bad)
