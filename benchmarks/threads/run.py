"""Tokens/s at 1, 2 and torch's default threads: training, an audit's forward passes, a build step.

What isaerft's thread default (:func:`isaerft.threads.default_threads`) should be is measured
here, on the organisms, as ratios within one run (the settings are interleaved, so machine
drift hits all of them alike). Three workloads per preset:

- ``train``: ``isaerft.training.train`` of ``recipes/organism-poison.yaml`` (per-latent scales,
  prefix cache on) for ``--steps`` optimizer steps; tokens/s is the recipe's own
  ``summary["tokens_per_s"]`` (tokens trained on over the fit time). The model, SAE, data and
  prefix cache are shared between the runs, so only the training is timed.
- ``audit_forward``: what an audit's scoring does per row: a no-grad forward pass of the
  trained ISaeRFT model and one of the base model over the poison rows (batches of 16);
  tokens/s counts each real (non-padding) row token once per pair of passes.
- ``build_lm_step``: the organism build's most expensive step, training its transformer
  (``isaerft.organism.lm.train_lm``, the preset's shape and batch, deterministic kernels as in
  a build) for ``--steps`` steps on random tokens; tokens/s = steps x batch x n_ctx / time.
  Builds themselves always run with ``BUILD_THREADS`` threads, so that every machine builds
  the same organism; this shows what that choice costs or gains.

Thread settings: ``"1"``, ``"2"`` and ``"default"``, torch's own count when this process
started (one per physical core unless ``OMP_NUM_THREADS`` is set, which the result records).
``ISAERFT_THREADS`` is ignored here (each setting is applied explicitly).

Usage (wants an idle machine; a few minutes per preset)::

    python -m benchmarks.threads [--preset tiny --preset small] [--steps 40] [--repeats 3]
    python -m benchmarks.docs

Writes ``benchmarks/results/threads-<preset>.json``::

    {
      "benchmark": "threads", "preset": "small", "steps": 40, "repeats": 3, "quick": false,
      "settings": {"1": 1, "2": 2, "default": 16},        # label -> torch threads
      "isaerft_default": {"threads": 2, "cores": 16, "rule": "min(2, cores - 1)"},
      "omp_num_threads": null,                              # the environment's, if set
      "workloads": {
        "train": {
          "what": "...",                                    # one line on what was timed
          "tokens_per_s": {"1": [..one per repeat..], "2": [...], "default": [...]},
          "median_tokens_per_s": {"1": 1863.0, "2": ..., "default": ...},
          "ratio_to_1": {"1": 1.0, "2": ..., "default": ...}   # median / median at 1 thread
        },
        "audit_forward": {...}, "build_lm_step": {...}
      },
      "wall_time_s": 123.4,
      "machine": {...}                                      # benchmarks.common.machine_info()
    }
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

TORCH_DEFAULT_THREADS = torch.get_num_threads()
"""torch's thread count at import, before anything here or in isaerft sets it."""

from benchmarks.common import RESULTS, machine_info, write_result  # noqa: E402
from isaerft.threads import (  # noqa: E402
    MAX_DEFAULT_THREADS,
    THREADS_ENV,
    default_threads,
    torch_threads,
    usable_cores,
)

PRESETS = ("tiny", "small")
STEPS = 40
REPEATS = 3
AUDIT_BATCH = 16
AUDIT_ROWS = 256
WORKLOADS = {
    "train": "isaerft.training.train of organism-poison.yaml (scales, prefix cache), {steps} steps",
    "audit_forward": "no-grad forward of the ISaeRFT model and the base model, "
    f"{AUDIT_ROWS} poison rows in batches of {AUDIT_BATCH}",
    "build_lm_step": "the organism build's LM training (train_lm, preset shape), {steps} steps",
}


def thread_settings(torch_default: int = TORCH_DEFAULT_THREADS) -> dict[str, int]:
    """Label -> torch threads: 1, 2 and torch's default."""
    return {"1": 1, "2": 2, "default": torch_default}


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Medians per setting and their ratio to the 1-thread median (above 1 = faster)."""
    median = {label: statistics.median(values) for label, values in samples.items()}
    one = median.get("1") or float("nan")
    return {
        "median_tokens_per_s": median,
        "ratio_to_1": {label: value / one for label, value in median.items()},
    }


def _interleaved(
    settings: dict[str, int], repeats: int, measure: Callable[[int], float], name: str
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label in settings}
    for repeat in range(repeats):
        for label, n in settings.items():
            value = measure(n)
            samples[label].append(value)
            print(f"  {name} repeat {repeat + 1}/{repeats}, {label} ({n}): {value:.0f} tokens/s")
    return samples


def _train_measure(preset: str, work: Path, steps: int) -> tuple[Callable[[int], float], Any, Path]:
    """A function ``threads -> tokens/s`` of the recipe's training, and the trained model."""
    from isaerft.organism import make_dataset
    from isaerft.organism.specs import organism
    from isaerft.training import PrefixCacheStore, TrainRecipe, train
    from isaerft.training import resolve as res
    from isaerft.training.recipe import find_recipe

    org = organism(preset)
    data = make_dataset("poison", work / "poison.jsonl", n=1024, seed=0, organism=org)
    spec = f"organism:{preset}"

    def recipe(threads: int, run: str) -> Any:
        overrides = [
            f"model={spec}",
            f"sae={spec}",
            "data.organism_dataset=null",
            f"data.path={data}",
            f"trainer.max_steps={steps}",
            f"trainer.threads={threads}",
            "trainer.progress_bar=false",
            "trainer.logger=none",
            "trainer.checkpoint_every_n_steps=0",
            "trainer.top_latents_every_n_steps=0",
            "trainer.resume=never",
            f"output_dir={work / run}",
        ]
        return TrainRecipe.from_yaml(find_recipe("organism-poison"), overrides)

    first = recipe(1, "warm-up")
    model = res.load_recipe_model(first, "cpu")
    saes = res.load_recipe_saes(first, "cpu")
    store = PrefixCacheStore()
    warm = train(first, model=model, saes=saes, prefix_cache=store)  # builds the prefix cache
    counter = [0]

    def measure(threads: int) -> float:
        counter[0] += 1
        result = train(
            recipe(threads, f"run-{counter[0]}"), model=model, saes=saes, prefix_cache=store
        )
        return float(result.summary["tokens_per_s"])

    return measure, warm.model, data


def _audit_measure(wrapped: Any, data: Path) -> Callable[[int], float]:
    from isaerft.export import read_texts
    from isaerft.export.data import token_batches

    texts = read_texts(data, max_rows=AUDIT_ROWS)
    batches = list(token_batches(wrapped.model, texts, AUDIT_BATCH))

    def measure(threads: int) -> float:
        with torch_threads(threads), torch.no_grad():
            tokens, _ = batches[0]
            wrapped(tokens)  # warm-up
            n_tokens, started = 0, time.perf_counter()
            for tokens, mask in batches:
                wrapped(tokens)
                wrapped.model(tokens)
                n_tokens += int(mask.sum())
            return n_tokens / (time.perf_counter() - started)

    return measure


def _build_measure(preset: str, steps: int) -> Callable[[int], float]:
    from isaerft.organism.build import organism_config
    from isaerft.organism.lm import make_model, train_lm
    from isaerft.organism.specs import organism
    from isaerft.organism.tokenizer import load_tokenizer

    cfg = organism_config(preset)
    lm = dataclasses.replace(cfg.lm, steps=steps, warmup_steps=min(cfg.lm.warmup_steps, steps))
    tok = load_tokenizer(organism(preset).model_dir)
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(4, len(tok), (lm.batch_size * 4, lm.n_ctx), generator=gen)
    rows[:, 0] = int(tok.bos_token_id)

    def measure(threads: int) -> float:
        deterministic = torch.are_deterministic_algorithms_enabled()
        with torch_threads(threads):
            torch.use_deterministic_algorithms(True)  # as in a build
            try:
                model = make_model(lm, tok, "threads-benchmark", seed=0)
                started = time.perf_counter()
                train_lm(model, rows, lm, seed=0, progress=False)
                elapsed = time.perf_counter() - started
            finally:
                torch.use_deterministic_algorithms(deterministic)
        return steps * lm.batch_size * lm.n_ctx / elapsed

    return measure


def run(preset: str, steps: int, repeats: int, quick: bool) -> dict[str, Any]:
    """Measure every workload of ``preset`` at every setting; the result's JSON content."""
    from isaerft.organism import build_organism

    started = time.perf_counter()
    settings = thread_settings()
    build_organism(preset, seed=0, progress=True)  # cached after the first build
    workloads: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="isaerft-threads-") as tmp:
        train_measure, wrapped, data = _train_measure(preset, Path(tmp), steps)
        measures = {
            "train": train_measure,
            "audit_forward": _audit_measure(wrapped, data),
            "build_lm_step": _build_measure(preset, steps),
        }
        for name, measure in measures.items():
            samples = _interleaved(settings, repeats, measure, name)
            workloads[name] = {
                "what": WORKLOADS[name].format(steps=steps),
                "tokens_per_s": samples,
                **summarize(samples),
            }
    cores = usable_cores()
    return {
        "benchmark": "threads",
        "preset": preset,
        "steps": steps,
        "repeats": repeats,
        "quick": quick,
        "settings": settings,
        "isaerft_default": {
            "threads": default_threads(cores),
            "cores": cores,
            "rule": f"min({MAX_DEFAULT_THREADS}, cores - 1)",
        },
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "workloads": workloads,
        "wall_time_s": time.perf_counter() - started,
        "machine": machine_info(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.threads", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--preset", action="append", choices=PRESETS, help="repeatable")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"default {STEPS}")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"default {REPEATS}")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 10 steps (a smoke run)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if os.environ.pop(THREADS_ENV, None) is not None:
        print(f"ignoring {THREADS_ENV}: every setting is applied explicitly")
    if os.environ.get("OMP_NUM_THREADS"):
        print(
            f"note: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} set torch's default to "
            f"{TORCH_DEFAULT_THREADS}; unset it to measure torch's own default"
        )
    steps, repeats = (10, 1) if args.quick else (args.steps, args.repeats)
    for preset in args.preset or PRESETS:
        print(f"preset {preset}: settings {thread_settings()}")
        result = run(preset, steps, repeats, args.quick)
        path = write_result(args.results / f"threads-{preset}.json", result)
        print(f"wrote {path}")
    return 0
