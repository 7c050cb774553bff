"""``isaerft train RECIPE [key=value ...]``: train from a YAML recipe into a run directory."""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from typing import Any

from isaerft.cli.errors import check_output_dir


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
    from isaerft.training import MovedLatent, TrainRecipe, format_moved_latents, train
    from isaerft.training.recipe import find_recipe

    started = time.perf_counter()
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.quiet:
        overrides.append("trainer.progress_bar=false")
    recipe = TrainRecipe.from_yaml(find_recipe(args.recipe), overrides)
    # Found now, not after the model has loaded.
    check_output_dir(recipe.run_dir, "--output-dir" if args.output_dir else "output_dir")
    from isaerft.training.resolve import torch_device

    torch_device(recipe.trainer.accelerator)  # no GPU in this build: say so before any work
    _refuse_unsafe_checkpoint(recipe)
    from isaerft.threads import resolve_threads
    from isaerft.training.module import TrainingWarning

    threads = resolve_threads(recipe.trainer.threads)  # a bad ISAERFT_THREADS: one line, now
    if _is_global_zero():
        print(threads.describe(), flush=True)

    try:
        with warnings.catch_warnings():
            # Printed below as one line each, from the run's summary.
            warnings.simplefilter("ignore", TrainingWarning)
            result = train(recipe)
    except KeyboardInterrupt:
        print(
            f"interrupted; rerun the same command to resume {recipe.run_dir} from its last "
            "checkpoint",
            file=sys.stderr,
        )
        return 130
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
    for warning in summary.get("warnings", []):
        print(f"isaerft: warning: {warning}", file=sys.stderr)
    return 0


def _refuse_unsafe_checkpoint(recipe: Any) -> None:
    """Refuse, before anything is loaded or written, a checkpoint the resume would unpickle
    that holds more than tensors (loading such a file with pickle could run code)."""
    import torch

    from isaerft.runs import LAST_CHECKPOINT, SUMMARY_FILE

    checkpoint = recipe.run_dir / LAST_CHECKPOINT
    resumes = recipe.trainer.resume == "auto" and not (recipe.run_dir / SUMMARY_FILE).is_file()
    if not (resumes and checkpoint.is_file()):
        return
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{checkpoint} holds objects other than tensors and was refused (loading it could "
            f"run code: {str(err).strip().splitlines()[0]}); delete {checkpoint.parent} to "
            "train afresh"
        ) from err
    except (EOFError, RuntimeError) as err:
        raise ValueError(
            f"{checkpoint} is not a readable checkpoint ({err}); it may be truncated: delete "
            f"{checkpoint.parent} to train afresh, or set trainer.resume=never"
        ) from err


def _is_global_zero() -> bool:
    from pytorch_lightning.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0
