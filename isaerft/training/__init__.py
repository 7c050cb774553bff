"""Training ISaeRFT components with PyTorch Lightning: recipes, data, objectives, runs.

The entry points are :func:`train` (a :class:`TrainRecipe` in, a :class:`RunResult` and a
run directory out) and :func:`load_run` (a run directory back to a trained model).
"""

from isaerft.training.callbacks import (
    MovedLatent,
    TopLatentsLogger,
    format_moved_latents,
    read_latent_labels,
    top_moved_latents,
)
from isaerft.training.data import TokenizedData, TokenSequences, load_rows, tokenize
from isaerft.training.datamodule import ISaeRFTDataModule
from isaerft.training.module import ISaeRFTLightningModule, NonFiniteLossError
from isaerft.training.prefix_cache import (
    PrefixBoundary,
    PrefixCache,
    PrefixCacheStore,
    find_boundary,
    run_from_prefix,
)
from isaerft.training.recipe import (
    DataConfig,
    ObjectiveConfig,
    OptimConfig,
    OrganismDatasetSpec,
    TrainerConfig,
    TrainRecipe,
)
from isaerft.training.run import RunInfo, RunResult, load_run, read_run_info, train

__all__ = [
    "DataConfig",
    "ISaeRFTDataModule",
    "ISaeRFTLightningModule",
    "MovedLatent",
    "NonFiniteLossError",
    "ObjectiveConfig",
    "OptimConfig",
    "OrganismDatasetSpec",
    "PrefixBoundary",
    "PrefixCache",
    "PrefixCacheStore",
    "RunInfo",
    "RunResult",
    "TokenSequences",
    "TokenizedData",
    "TopLatentsLogger",
    "TrainRecipe",
    "TrainerConfig",
    "find_boundary",
    "format_moved_latents",
    "load_rows",
    "load_run",
    "read_latent_labels",
    "read_run_info",
    "run_from_prefix",
    "tokenize",
    "top_moved_latents",
    "train",
]
