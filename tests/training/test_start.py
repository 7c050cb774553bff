"""Differential training: ``recipe.start_from`` loads a finished run and anchors the L1 there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from isaerft._io import read_json
from isaerft.artifact import read_intervention_config, read_intervention_weights
from isaerft.training import TrainRecipe, train


def _train(tiny_setup: Any, out: Path, **sections: Any) -> Any:
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections))
    return train(recipe, run_dir=out)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    folder = run_dir / "intervention"
    return read_intervention_weights(folder, read_intervention_config(folder))


@pytest.fixture(scope="module")
def start_run(tiny_setup: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tiny_setup, tmp_path_factory.mktemp("start") / "run").run_dir


def test_a_run_starts_from_the_given_run_and_records_it(tiny_setup, start_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A vanishing lr: the run ends where it started, and its L1 (the distance) stays ~0.
    result = _train(tiny_setup, tmp_path / "delta", start_from=str(start_run), optim={"lr": 1e-9})
    start, delta = _weights(start_run), _weights(result.run_dir)
    assert start.keys() == delta.keys()
    assert any(bool(t.abs().sum() > 0) for t in start.values())
    for key, tensor in start.items():
        assert torch.allclose(tensor, delta[key], atol=1e-6)
    assert result.summary["final"]["train/l1"] < 1e-4
    record = read_json(result.run_dir / "run.json")["start_from"]
    assert record["path"] == str(start_run.resolve())
    assert (
        record["weights_sha256"]
        == read_intervention_config(start_run / "intervention")["weights_sha256"]
    )


def test_the_l1_pulls_towards_the_start_not_towards_identity(
    tiny_setup, start_run, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # A heavy L1 keeps a run from the start near the start, where the plain L1 would pull
    # every scale back towards 1 (a zero edit): with SGD, each step moves a scale by lr times
    # the L1 coefficient towards wherever the L1 is measured from.
    result = _train(
        tiny_setup,
        tmp_path / "delta",
        start_from=str(start_run),
        intervention={"component": "scale", "l1_coefficient": 1.0},
        optim={"optimizer": "sgd", "lr": 0.01},
    )
    start, delta = _weights(start_run), _weights(result.run_dir)
    size = sum(float(t.abs().sum()) for t in start.values())
    moved = sum(float((delta[k] - t).abs().sum()) for k, t in start.items())
    kept = sum(float(delta[k].abs().sum()) for k in start)
    assert size > 0
    assert moved < 0.1 * size
    assert kept > 0.9 * size


def test_a_start_of_another_kind_is_refused(tiny_setup, start_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="same component kind"):
        _train(
            tiny_setup,
            tmp_path / "delta",
            start_from=str(start_run),
            intervention={"component": "bias"},
        )
    assert not (tmp_path / "delta" / "run.json").exists()


def test_an_unfinished_start_is_refused(tiny_setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text("{}")
    with pytest.raises((ValueError, FileNotFoundError)):
        _train(tiny_setup, tmp_path / "delta", start_from=str(tmp_path / "half"))
