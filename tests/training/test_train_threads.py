"""``train()`` runs with the chosen torch threads and gives the caller's back, also on error."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from isaerft._io import read_json
from isaerft.threads import THREADS_ENV
from isaerft.training import TrainRecipe, train


class _Seen(pl.Callback):
    """Records the thread count the training runs with; raises at the start if told to."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: int | None = None
        self.fail = fail

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.threads = torch.get_num_threads()
        if self.fail:
            raise RuntimeError("stop here")


def test_train_sets_the_recipe_threads_and_restores_them(  # type: ignore[no-untyped-def]
    tiny_setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(1)  # the folder's conftest restores the session's count after
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 2, "threads": 2}))
    seen = _Seen()
    result = train(recipe, run_dir=tmp_path / "ok", callbacks=[seen])
    assert seen.threads == 2 and torch.get_num_threads() == 1
    assert result.summary["torch_threads"] == 2
    assert read_json(tmp_path / "ok" / "summary.json")["torch_threads"] == 2

    failing = _Seen(fail=True)
    with pytest.raises(RuntimeError, match="stop here"):
        train(recipe, run_dir=tmp_path / "fails", callbacks=[failing])
    assert failing.threads == 2 and torch.get_num_threads() == 1


def test_the_environment_beats_the_recipe(  # type: ignore[no-untyped-def]
    tiny_setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv(THREADS_ENV, "3")
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 1, "threads": 2}))
    seen = _Seen()
    assert train(recipe, run_dir=tmp_path / "env", callbacks=[seen]).summary["torch_threads"] == 3
    assert seen.threads == 3 and torch.get_num_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "lots")
    with pytest.raises(ValueError, match="ISAERFT_THREADS='lots' is invalid"):
        train(recipe, run_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # refused before the folder was claimed
