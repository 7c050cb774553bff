"""Command line of the fine-tuning quality benchmark (see the package docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch

from benchmarks.common import machine_info, write_result
from isaerft.organism import build_organism

from .docs import write_docs
from .run import FULL, QUICK, run_benchmark
from .tasks import TASKS

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write the JSON (and the docs page with ``--docs``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_quality")
    parser.add_argument("--preset", default="tiny", help="organism preset (tiny, small)")
    parser.add_argument(
        "--quick", action="store_true", help="3 seeds, 30 steps, small splits (tiny: ~10 min)"
    )
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--steps", type=int, help="override the training steps")
    parser.add_argument("--methods", nargs="+", help="subset of methods (default: all)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--no-tune", action="store_true", help="middle of each grid, no search")
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument("--docs", action="store_true", help="also write docs/comparison.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = QUICK if args.quick else FULL
    overrides = {"seeds": args.seeds, "steps": args.steps, "tune": False if args.no_tune else None}
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    org = build_organism(args.preset)
    result = run_benchmark(org, settings, args.methods, tuple(args.tasks))
    result = {
        "preset": args.preset,
        "mode": "quick" if args.quick else "full",
        "settings": dataclasses.asdict(settings),
        **result,
        "machine": machine_info(),
    }
    out = args.out or RESULTS / f"finetune_quality-{args.preset}.json"
    write_result(out, result)
    print(f"wrote {out} in {result['wall_s']:.0f}s")
    if args.docs:
        print(f"wrote {write_docs(out)}")


if __name__ == "__main__":
    main()
