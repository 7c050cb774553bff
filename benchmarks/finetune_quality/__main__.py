"""Command line of the fine-tuning quality benchmark (see the package docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine_info, write_result
from isaerft.organism import build_organism

from .docs import corpus_result_path, full_result_path, write_docs
from .run import FULL, QUICK, run_benchmark
from .tasks import TASKS, supported_tasks

RESULTS = Path(__file__).resolve().parents[1] / "results"
CORPORA = Path(
    os.environ.get("ISAERFT_CORPORA", Path(__file__).resolve().parents[3] / "shared" / "corpora")
)
DEFAULT_CORPUS = CORPORA / "tinyshakespeare.txt"
"""``--corpus`` given without a file: Tiny Shakespeare from the checkout's ``../shared/corpora``."""


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write the JSON (and the docs page with ``--docs``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune_quality")
    parser.add_argument("--preset", default="tiny", help="organism preset (tiny, small)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 seeds, 30 steps, small splits (tiny: about 9 min on 2 cores)",
    )
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--steps", type=int, help="override the training steps")
    parser.add_argument("--methods", nargs="+", help="subset of methods (default: all)")
    parser.add_argument(
        "--tasks", nargs="+", choices=TASKS, help="default: every task the organism supports"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        nargs="?",
        const=DEFAULT_CORPUS,
        help="build the organism on this text file (no file: ../shared/corpora/"
        "tinyshakespeare.txt); it supports the style and preference tasks only",
    )
    parser.add_argument("--no-tune", action="store_true", help="middle of each grid, no search")
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="also write docs/comparison.md (from the main result and, if any, the corpus one)",
    )
    args = parser.parse_args(argv)
    if args.corpus is not None and not args.corpus.is_file():
        parser.exit(
            2, f"corpus {args.corpus} is absent: the corpus-organism benchmark was not run\n"
        )
    main_result = RESULTS / f"finetune_quality-{args.preset}.json"
    if args.docs and (args.corpus is not None or not args.quick) and not main_result.is_file():
        parser.error(
            f"--docs needs the main (quick) result {main_result} too; run "
            "`python -m benchmarks.finetune_quality --quick` first"
        )
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    settings = QUICK if args.quick else FULL
    overrides = {"seeds": args.seeds, "steps": args.steps, "tune": False if args.no_tune else None}
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    org = build_organism(args.preset, corpus=args.corpus)
    supported = supported_tasks(org)
    unsupported = [t for t in args.tasks or () if t not in supported]
    if unsupported:
        parser.error(
            f"argument --tasks: {unsupported} cannot be built on the organism of "
            f"{args.corpus.name if args.corpus else args.preset} (real text has no colour or "
            f"sentiment ground truth); choose from {list(supported)}"
        )
    tasks = tuple(args.tasks or supported)
    result = run_benchmark(org, settings, args.methods, tasks)
    result = {
        "preset": args.preset,
        "corpus": args.corpus.name if args.corpus else None,
        "preference_target": org.default_target,
        "mode": "quick" if args.quick else "full",
        "settings": dataclasses.asdict(settings),
        **result,
        "machine": machine_info(),
    }
    # The page's main tables are the quick run's (the path); a full-mode run of the
    # synthetic organism sits beside it and adds its own section.
    if args.corpus is not None:
        default = corpus_result_path(main_result, args.preset)
    else:
        default = main_result if args.quick else full_result_path(main_result, args.preset)
    out = args.out or default
    if (args.tasks or args.methods) and out.is_file():
        result = merged(json.loads(out.read_text(encoding="utf-8")), result)
    write_result(out, result)
    print(f"wrote {out} in {result['wall_s']:.0f}s")
    if args.docs:
        if args.corpus is not None:
            page = write_docs(main_result, corpus_path=out)
        elif args.quick:
            page = write_docs(out)
        else:
            page = write_docs(main_result, full_path=out)
        print(f"wrote {page}")


def merged(previous: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A ``--tasks`` run's ``result`` added to the ``previous`` result of the same preset,
    corpus, mode and settings (a full mode is often run a few tasks at a time): its tasks
    replace the previous ones of the same name; ``runs`` lists each run's tasks, wall time and
    machine, and ``wall_s`` is their sum (a run whose tasks were all run again is dropped).
    A ``--methods`` run adds its methods to the previous tasks instead (replacing those of the
    same name, and an earlier run of no more methods on no more tasks; ``full-ft``, which every
    run trains first for ``gap_closed``, is seeded and so the same). A previous result measured
    otherwise is replaced."""
    keys = ("preset", "corpus", "preference_target", "mode", "settings")
    if any(previous.get(k) != result.get(k) for k in keys):
        return result
    # Tasks the run left some previous methods out of: add its methods to the previous ones.
    added = {
        name
        for name, task in result["tasks"].items()
        if name in previous["tasks"]
        and set(previous["tasks"][name]["methods"]) - set(task["methods"])
    }
    fresh = set(result["tasks"]) - added
    earlier = previous.get("runs") or [
        {
            "tasks": list(previous["tasks"]),
            "wall_s": previous["wall_s"],
            "machine": previous.get("machine", {}),
        }
    ]
    kept = [{**r, "tasks": [t for t in r["tasks"] if t not in fresh]} for r in earlier]
    runs = [r for r in kept if r["tasks"]]
    run: dict[str, Any] = {
        "tasks": list(result["tasks"]),
        "wall_s": result["wall_s"],
        "machine": result["machine"],
    }
    if added:
        run["methods"] = sorted({m for t in added for m in result["tasks"][t]["methods"]})
        # An earlier run of these methods on these tasks was measured again: drop it.
        runs = [
            r
            for r in runs
            if not (set(r.get("methods", ())) and set(r["methods"]) <= set(run["methods"]))
            or not set(r["tasks"]) <= set(run["tasks"])
        ]
    runs.append(run)
    tasks = {k: v for k, v in previous["tasks"].items() if k not in fresh} | {
        k: v for k, v in result["tasks"].items() if k in fresh
    }
    for name in added:
        before, now = previous["tasks"][name], result["tasks"][name]
        tasks[name] = {
            **before,
            "methods": before["methods"] | now["methods"],
            "wall_s": before.get("wall_s", 0.0) + now.get("wall_s", 0.0),
        }
    return {**result, "tasks": tasks, "wall_s": sum(r["wall_s"] for r in runs), "runs": runs}


if __name__ == "__main__":
    main()
