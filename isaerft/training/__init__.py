"""Training ISaeRFT components with PyTorch Lightning: recipes, data, objectives, runs.

The entry points are :func:`train` (a :class:`TrainRecipe` in, a :class:`RunResult` and a
run directory out) and :func:`load_run` (a run directory back to a trained model).
"""

from isaerft.training.callbacks import (
    MovedLatent,
    format_moved_latents,
    read_latent_labels,
    top_moved_latents,
)
from isaerft.training.datamodule import ISaeRFTDataModule
from isaerft.training.module import ISaeRFTLightningModule, NonFiniteLossError
from isaerft.training.prefix_cache import PrefixCache, PrefixCacheStore
from isaerft.training.recipe import TrainRecipe
from isaerft.training.record import RunInfo, load_run, read_run_info
from isaerft.training.run import RunResult, train
from isaerft.training.sparsity import proximal_l1_

# Everything else (the recipe's sections, tokenising, prefix boundaries, the top-latents
# logger) is importable from its module: isaerft.training.recipe, .data, .prefix_cache, ...
__all__ = [
    "ISaeRFTDataModule",
    "ISaeRFTLightningModule",
    "MovedLatent",
    "NonFiniteLossError",
    "PrefixCache",
    "PrefixCacheStore",
    "RunInfo",
    "RunResult",
    "TrainRecipe",
    "format_moved_latents",
    "load_run",
    "proximal_l1_",
    "read_latent_labels",
    "read_run_info",
    "top_moved_latents",
    "train",
]
