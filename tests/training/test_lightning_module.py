"""The LightningModule: objectives end to end, regularisers, NaN handling, checkpoint content."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from isaerft.training import NonFiniteLossError, TrainRecipe, train
from isaerft.training.module import lr_schedule


def run(tiny_setup, tmp_path: Path, **sections: Any):  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections))
    return train(recipe, run_dir=tmp_path / "run")


def metric_columns(run_dir: Path) -> set[str]:
    with open(run_dir / "metrics.csv", encoding="utf-8", newline="") as fh:
        return set(next(csv.reader(fh)))


def test_sft_lowers_the_completion_loss(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        tiny_setup, tmp_path, optim={"lr": 0.1}, trainer={"max_steps": 16, "log_every_n_steps": 1}
    )
    with open(result.run_dir / "metrics.csv", encoding="utf-8", newline="") as fh:
        losses = [float(r["train/objective"]) for r in csv.DictReader(fh)]
    assert losses[-1] < losses[0]
    assert {"train/loss", "train/objective", "train/l1", "train/moved_latents"} <= metric_columns(
        result.run_dir
    )


def test_dpo_uses_the_base_model_as_reference(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        tiny_setup,
        tmp_path,
        data={"path": str(tiny_setup.dpo_path), "batch_size": 8},
        objective={"kind": "dpo", "dpo_beta": 0.5},
        intervention={"component": "scale", "l1_coefficient": 0.0},
        optim={"lr": 0.1},
        trainer={"max_steps": 1, "log_every_n_steps": 1},
    )
    # After one step from identity the policy still equals the reference: loss = log 2.
    with open(result.run_dir / "metrics.csv", encoding="utf-8", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert float(first["train/objective"]) == pytest.approx(math.log(2), abs=1e-5)
    assert "train/reward_accuracy" in first
    assert result.model.num_moved_latents() > 0


def test_kl_regulariser_is_logged_separately(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        tiny_setup,
        tmp_path,
        objective={
            "kind": "sft",
            "kl_coefficient": 0.5,
            "kl_data": {"path": str(tiny_setup.text_path), "batch_size": 4},
        },
        trainer={"max_steps": 3},
    )
    assert "train/kl" in metric_columns(result.run_dir)
    assert result.summary["final"]["train/kl"] >= 0.0


class PoisonWeights(pl.Callback):
    """Simulates divergence: sets the component weights to NaN after step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in module.isaerft.trainable_parameters():
                    p.fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(trainer={"max_steps": 10, "checkpoint_every_n_steps": 2})
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 3.*last good checkpoint"):
        train(recipe, run_dir=tmp_path / "run", callbacks=[PoisonWeights(3)])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["state_dict"].values())
    assert not (tmp_path / "run" / "intervention").exists()


def test_lr_schedules() -> None:
    warm = lr_schedule("constant", 2, 10)
    assert [warm(s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    linear, cosine = lr_schedule("linear", 0, 10), lr_schedule("cosine", 0, 10)
    assert linear(5) == pytest.approx(0.5) and linear(10) == 0.0
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
