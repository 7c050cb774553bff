"""The Lightning ``Trainer`` a run fits with: the recipe's trainer settings, and the run's
callbacks (the periodic top-latents log, resumable checkpoints) added to the caller's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from isaerft.runs import CHECKPOINTS_DIR, TOP_LATENTS_FILE
from isaerft.training.callbacks import TopLatentsLogger
from isaerft.training.recipe import TrainRecipe

__all__ = ["make_trainer"]


def make_trainer(
    recipe: TrainRecipe,
    run_dir: Path,
    max_steps: int,
    callbacks: list[pl.Callback],
    labels: dict[int, str] | None,
    loggers: list[Any],
) -> pl.Trainer:
    cfg = recipe.trainer
    if cfg.top_latents_every_n_steps:
        callbacks.append(
            TopLatentsLogger(
                run_dir / TOP_LATENTS_FILE,
                cfg.top_latents_every_n_steps,
                cfg.top_k,
                labels,
                verbose=cfg.progress_bar,
            )
        )
    if cfg.checkpoint_every_n_steps:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(
                dirpath=run_dir / CHECKPOINTS_DIR,
                filename="step-{step:06d}",
                every_n_train_steps=cfg.checkpoint_every_n_steps,
                save_top_k=1,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,  # type: ignore[arg-type]
        max_epochs=1,
        max_steps=max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=recipe.optim.grad_clip,
        log_every_n_steps=cfg.log_every_n_steps,
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=bool(cfg.checkpoint_every_n_steps),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
    )
