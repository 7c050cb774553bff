"""Run ``isaerft.training.train`` on a recipe and stall at a given step so a test can SIGKILL it.

Usage: python killable_train.py RECIPE.yaml RUN_DIR STALL_AT_STEP MARKER_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from isaerft.training import TrainRecipe, train


class StallAt(pl.Callback):
    """After optimizer step ``step``, write ``marker`` and sleep until killed."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            self.marker.write_text(str(self.step), encoding="utf-8")
            while True:
                time.sleep(1)


if __name__ == "__main__":
    recipe_path, run_dir, step, marker = sys.argv[1:5]
    recipe = TrainRecipe.from_yaml(recipe_path)
    train(recipe, run_dir=run_dir, callbacks=[StallAt(int(step), Path(marker))])
