"""``isaerft`` command line: one module per sub-command group, each with ``register(subparsers)``.

Importing this package loads no torch or Lightning: each command imports what it needs when
it runs, so ``isaerft --help`` and argument errors answer at once. A failure the user caused
prints one line and exits with 2 (see :mod:`isaerft.cli.errors`); ``--debug`` shows its
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from isaerft.cli.errors import one_line_warnings, report

# Each module defines ``register(subparsers) -> None`` and sets ``func`` on its parsers.
COMMAND_MODULES = ("organism", "train", "audit", "export", "demo")
DEBUG_FLAG = "--debug"


class LazyChoices:
    """Argument choices computed on first use, so a command's heavy module (which defines
    them) is imported only when that command's arguments are checked or its help is shown.
    Give the argument an explicit ``metavar``: argparse would otherwise list the choices
    while building the parser."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._values: list[str] | None = None

    def _get(self) -> list[str]:
        if self._values is None:
            self._values = sorted(self._load())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def build_parser() -> argparse.ArgumentParser:
    """The ``isaerft`` argument parser with every sub-command registered."""
    from isaerft import __version__

    parser = argparse.ArgumentParser(
        prog="isaerft",
        description="Interpretable fine-tuning through SAE latents: train, audit, export.",
    )
    parser.add_argument("--version", action="version", version=f"isaerft {__version__}")
    parser.add_argument(
        DEBUG_FLAG,
        action="store_true",
        help="show the full traceback of an error (may be given anywhere on the line)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"isaerft.cli.{name}").register(subparsers)
    return parser


def _is_override(arg: str) -> bool:
    """A ``KEY=VALUE`` recipe override (not an option)."""
    return "=" in arg and not arg.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a user error)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow options (train RECIPE --quiet trainer.max_steps=5):
    # argparse stops filling a positional list at the first option, so gather the rest here.
    if extra and hasattr(args, "overrides") and all(_is_override(a) for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with one_line_warnings():
            result = args.func(args)
    except Exception as err:
        code = None if debug else report(err)
        if code is None:
            raise
        return code
    return int(result or 0)
