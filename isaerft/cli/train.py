"""``isaerft train RECIPE [key=value ...]``: train from a YAML recipe into a run directory."""

from __future__ import annotations

import argparse
import time
from typing import Any

from isaerft.training.callbacks import MovedLatent, format_moved_latents


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train ISaeRFT components from a YAML recipe",
        description=(
            "Train from a recipe (a path, or the name of a shipped recipe such as "
            "organism-poison) and write a run directory: config.yaml, run.json, intervention/, "
            "metrics.csv, summary.json, checkpoints/. A run directory holding a checkpoint is "
            "resumed unless trainer.resume=never."
        ),
    )
    parser.add_argument("recipe", help="recipe YAML file or shipped recipe name")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override recipe values, e.g. trainer.max_steps=100 optim.lr=1e-2 (YAML values)",
    )
    parser.add_argument("--output-dir", help="run directory (overrides the recipe's output_dir)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or latent tables")
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Load and validate the recipe, train, and print where the results went."""
    from isaerft.training import TrainRecipe, train
    from isaerft.training.recipe import find_recipe

    started = time.perf_counter()
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.quiet:
        overrides.append("trainer.progress_bar=false")
    recipe = TrainRecipe.from_yaml(find_recipe(args.recipe), overrides)
    result = train(recipe)
    if not _is_global_zero():
        return 0
    summary = result.summary
    final = ", ".join(f"{k.removeprefix('train/')}={v:.4g}" for k, v in summary["final"].items())
    print(f"run directory: {result.run_dir}")
    print(f"steps: {summary['steps']}  {final}")
    print(
        f"moved latents (> {summary['moved_tolerance']:g}): {summary['moved_latents']}  "
        f"tokens/s: {summary['tokens_per_s']:.0f}"
    )
    if not args.quiet:
        print(format_moved_latents([MovedLatent(**m) for m in summary["top_latents"]]))
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return 0


def _is_global_zero() -> bool:
    from pytorch_lightning.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0
