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
from isaerft.training.module import TrainingDivergedError, lr_schedule


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


class PoisonGradient(pl.Callback):
    """Fills the gradients of the update of step ``step`` (1-based) with ``value`` just before
    the optimizer: NaN, or 3e38 (a finite gradient whose update overflows)."""

    def __init__(self, step: int, value: float = float("nan")) -> None:
        self.step, self.value = step, value

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: Any, optimizer: Any) -> None:
        if trainer.global_step + 1 == self.step:
            for p in module.isaerft.trainable_parameters():
                if p.grad is not None:
                    p.grad.fill_(self.value)


def PoisonUpdate(step: int) -> PoisonGradient:
    """Overflows a parameter in the update of step ``step`` (an lr of 1e38 on a finite grad)."""
    return PoisonGradient(step, 3e38)


@pytest.mark.parametrize("poison", [PoisonGradient, PoisonUpdate])
def test_last_good_checkpoint_is_finite_when_the_bad_update_is_a_checkpoint_step(
    tiny_setup, tmp_path: Path, poison: type
) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(
            optim={"optimizer": "sgd", "lr": 10.0},
            trainer={"max_steps": 10, "checkpoint_every_n_steps": 2},
        )
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite.*last good checkpoint is kept"):
        train(recipe, run_dir=tmp_path / "run", callbacks=[poison(4)])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["state_dict"].values())


def test_finite_divergence_is_stopped(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(optim={"lr": 1e30}))
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 1: .* reached 1e\+30"):
        train(recipe, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "intervention").exists()


class StopAt(pl.Callback):
    """Stands in for a kill after step ``step`` (before that step's checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_a_loss_blow_up_below_the_parameter_limit_is_reported(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft._io import read_json
    from isaerft.training.module import TrainingWarning

    # Adam with lr=1e3: every parameter stays far below the divergence limit (1e6), the loss
    # ends ~50x above where it started, and nothing is non-finite.
    sections: dict[str, Any] = {
        "optim": {"lr": 1e3},
        "trainer": {"max_steps": 8, "checkpoint_every_n_steps": 2},
    }
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections))
    with pytest.warns(
        TrainingWarning, match=r"loss rose from 3\.\d+ .* lower optim\.lr \(now 1000\)"
    ):
        result = train(recipe, run_dir=tmp_path / "a")
    summary = read_json(result.run_dir / "summary.json")
    assert summary["warnings"] == result.summary["warnings"] and len(summary["warnings"]) == 1
    start = summary["initial_loss"]
    assert summary["final"]["train/loss"] > 2 * start + 1
    # A resumed run compares with the loss its first attempt started from (kept in checkpoints).
    with pytest.raises(KeyboardInterrupt):
        train(recipe, run_dir=tmp_path / "b", callbacks=[StopAt(4)])
    with pytest.warns(TrainingWarning, match=r"loss rose from 3\.\d+"):
        resumed = train(recipe, run_dir=tmp_path / "b")
    assert resumed.summary["resumed_from_step"] == 2 and resumed.summary["initial_loss"] == start
    # A training that lowers its loss says nothing.
    healthy = train(
        TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 8})),
        run_dir=tmp_path / "c",
    )
    assert healthy.summary["warnings"] == [] and healthy.summary["initial_loss"] == start


class RecordLr(pl.Callback):
    """Records the learning rate each step trains with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_the_documented_remedy_resumes_with_a_lower_lr(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sections = {"trainer": {"max_steps": 6, "checkpoint_every_n_steps": 2}}
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections))
    with pytest.raises(NonFiniteLossError):
        train(recipe, run_dir=tmp_path / "run", callbacks=[PoisonWeights(3)])
    lower = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(**sections, optim={"lr": 0.01, "grad_clip": 1.0})
    )
    seen = RecordLr()
    result = train(lower, run_dir=tmp_path / "run", callbacks=[seen])
    assert result.summary["resumed_from_step"] == 2 and result.summary["steps"] == 6
    assert seen.lrs == [0.01] * 4  # the new lr, not the checkpoint's 0.05
    other = TrainRecipe.from_dict(tiny_setup.recipe_dict(**sections, optim={"optimizer": "sgd"}))
    (tmp_path / "run" / "summary.json").unlink()
    with pytest.raises(ValueError, match=r"optim.optimizer=adam; a resume may change lr"):
        train(other, run_dir=tmp_path / "run")
