"""``isaerft organism build|dataset``: build the model organism, write fine-tuning datasets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from isaerft.cli import LazyChoices
from isaerft.cli.errors import check_output_dir, check_output_file


def _presets() -> list[str]:
    from isaerft.organism.build import ORGANISM_PRESETS

    return list(ORGANISM_PRESETS)


def _dataset_kinds() -> list[str]:
    from isaerft.organism.datasets import DATASET_KINDS

    return list(DATASET_KINDS)


def register(subparsers: Any) -> None:
    """Add the ``organism`` command group to the ``isaerft`` parser."""

    parser = subparsers.add_parser(
        "organism",
        help="build the local model organism (LM + SAE + ground truth), write datasets",
        description="Model organism: a synthetic language, a tiny transformer and an SAE with "
        "ground-truth latent labels, built on CPU; and datasets that plant known behaviours.",
    )
    sub = parser.add_subparsers(dest="organism_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: _help(parser))

    build = sub.add_parser("build", help="build (or reuse from cache) an organism")
    build.add_argument(
        "--preset",
        choices=LazyChoices(_presets),
        metavar="PRESET",
        default="tiny",
        help="organism size: %(choices)s (default %(default)s)",
    )
    build.add_argument("--out", help="organism folder (default: the cache, by config hash)")
    build.add_argument("--corpus", help="build from this plain-text file instead")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--sae-hook",
        help="train the SAE at this residual hook instead of the preset's "
        "(e.g. blocks.1.hook_resid_post)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress output")
    build.set_defaults(func=_build)

    data = sub.add_parser("dataset", help="write a clean/poison/decoy/benign-shift dataset")
    data.add_argument(
        "--kind",
        choices=LazyChoices(_dataset_kinds),
        metavar="KIND",
        required=True,
        help="dataset kind: %(choices)s",
    )
    data.add_argument("--trigger", help="word, phrase or concept:<family> (default: organism's)")
    data.add_argument(
        "--target",
        help="phrase, sentiment:negative|positive or concept:<family>=<word> (default: organism's)",
    )
    data.add_argument("--fraction", type=float, default=0.1)
    data.add_argument("--n", type=int, default=2000)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--out", required=True, help="output JSONL (labels/meta written beside it)")
    data.add_argument(
        "--organism", help="organism folder (default: the synthetic language of seed 0)"
    )
    data.set_defaults(func=_dataset)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _build(args: argparse.Namespace) -> int:
    from isaerft.organism.build import build_organism

    if args.out:
        check_output_dir(args.out, "--out")
    org = build_organism(
        args.preset,
        out=args.out,
        corpus=args.corpus,
        seed=args.seed,
        progress=not args.quiet,
        sae_hook=args.sae_hook,
    )
    print(org.path)
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from isaerft.organism.datasets import dataset_paths, make_dataset

    check_output_file(args.out, "--out")
    out = make_dataset(
        args.kind,
        args.out,
        trigger=args.trigger,
        target=args.target,
        fraction=args.fraction,
        n=args.n,
        seed=args.seed,
        organism=args.organism,
    )
    labels, meta = dataset_paths(out)
    print(json.dumps({"rows": str(out), "labels": str(labels), "meta": str(meta)}))
    return 0
