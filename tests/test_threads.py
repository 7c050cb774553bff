"""``isaerft.threads``: which thread count wins, the default policy, and restoring torch's."""

from __future__ import annotations

import pytest
import torch

from isaerft.configbase import ConfigError
from isaerft.threads import (
    THREADS_ENV,
    default_threads,
    resolve_threads,
    torch_threads,
)
from isaerft.training.recipe import TrainerConfig


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 2), (4, 2), (64, 2)])
def test_default_leaves_a_core_free_and_never_exceeds_two(cores: int, expected: int) -> None:
    assert default_threads(cores) == expected


def test_precedence_env_then_recipe_then_omp_then_default() -> None:
    both = resolve_threads(3, {THREADS_ENV: "4", "OMP_NUM_THREADS": "5"})
    assert (both.n, both.source) == (4, THREADS_ENV)
    assert both.describe() == (
        "isaerft: using 4 torch threads (ISAERFT_THREADS=4, over trainer.threads=3)"
    )
    recipe = resolve_threads(3, {"OMP_NUM_THREADS": "5"})
    assert (recipe.n, recipe.source) == (3, "trainer.threads")
    assert "ISAERFT_THREADS overrides it" in recipe.describe()
    omp = resolve_threads(None, {"OMP_NUM_THREADS": "5"})
    assert (omp.n, omp.source) == (5, "OMP_NUM_THREADS")
    default = resolve_threads(None, {THREADS_ENV: " ", "OMP_NUM_THREADS": "4,2"})  # unusable
    assert (default.n, default.source) == (default_threads(), "default")
    line = default.describe()
    assert line.startswith(f"isaerft: using {default.n} torch thread") and "default: min(2," in line
    assert "trainer.threads" in line and THREADS_ENV in line  # how to change it


def test_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(1).n == 3
    monkeypatch.delenv(THREADS_ENV)
    assert resolve_threads(1).n == 1


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_a_bad_env_value_is_one_line_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_threads(2, {THREADS_ENV: raw})
    message = str(err.value)
    assert message.startswith(f"{THREADS_ENV}={raw!r} is invalid") and "\n" not in message


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_the_recipe_field_is_validated(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        TrainerConfig.from_dict({"threads": bad})
    message = str(err.value)
    assert message.startswith(f"recipe trainer.threads={bad!r} is invalid") and "\n" not in message


def test_the_recipe_field_accepts_a_count_or_null() -> None:
    assert TrainerConfig.from_dict({"threads": 3}).threads == 3
    assert TrainerConfig.from_dict({"threads": None}).threads is None
    assert TrainerConfig().threads is None


def test_torch_threads_restores_after_the_block_and_after_an_error() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with pytest.raises(RuntimeError, match="boom"), torch_threads(2):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="integer >= 1"), torch_threads(0):
            pass
    finally:
        torch.set_num_threads(before)


def test_library_entry_points_restore_the_callers_threads() -> None:
    import torch

    from isaerft.threads import with_default_threads

    @with_default_threads
    def work() -> int:
        return torch.get_num_threads()

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert work() >= 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_callers_choice_holds_inside_library_entry_points() -> None:
    import torch

    from isaerft.threads import torch_threads, with_default_threads

    @with_default_threads
    def work() -> int:
        return torch.get_num_threads()

    before = torch.get_num_threads()
    with torch_threads(3):
        assert work() == 3
    assert torch.get_num_threads() == before
