"""``isaerft`` command line: one module per sub-command group, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers) -> None`` and sets ``func`` on its parsers.
COMMAND_MODULES = ("organism", "train", "audit", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isaerft",
        description="Interpretable fine-tuning through SAE latents: train, audit, export.",
    )
    from isaerft import __version__

    parser.add_argument("--version", action="version", version=f"isaerft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"isaerft.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"isaerft.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"isaerft: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)
