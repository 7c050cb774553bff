"""The torch-threads part of ``docs/benchmarks.md``, from ``threads-<preset>.json``."""

from __future__ import annotations

from typing import Any

from .poison import num, table

WORKLOAD_NAMES = {
    "train": "training",
    "audit_forward": "audit forward passes",
    "build_lm_step": "organism build (LM training)",
}
INTRO = """## Torch threads

Tokens/s of isaerft's CPU work at 1 and 2 torch threads and at torch's own default (one thread
per core), measured by `python -m benchmarks.threads` with the settings interleaved in one
run; the ratios are to 1 thread (above 1 = faster). isaerft picks its threads with
`ISAERFT_THREADS`, else `trainer.threads`, else `OMP_NUM_THREADS`, else its default
`min(2, cores - 1)`; organism builds always use 2 (see `isaerft.threads`). A busy machine makes
more threads slower, not faster: rerun on an idle one before changing the default.
"""


def threads_section(results: dict[str, dict[str, Any]]) -> str:
    """One table per preset (``results`` by file stem; only ``benchmark == "threads"``)."""
    parts = [INTRO]
    for name, result in sorted(results.items()):
        parts.append(_preset(name, result))
    return "\n".join(parts)


def _preset(name: str, result: dict[str, Any]) -> str:
    settings = result["settings"]
    labels = [label for label in ("1", "2", "default") if label in settings]
    header = ["workload"]
    header += [_label(label, settings[label]) + " (tokens/s)" for label in labels]
    header += [f"{_label(label, settings[label])} / 1" for label in labels if label != "1"]
    rows = []
    for key, entry in result["workloads"].items():
        median, ratio = entry["median_tokens_per_s"], entry["ratio_to_1"]
        row = [WORKLOAD_NAMES.get(key, key)]
        row += [num(median.get(label), 0) for label in labels]
        row += [num(ratio.get(label)) for label in labels if label != "1"]
        rows.append(row)
    m = result.get("machine", {})
    default = result.get("isaerft_default", {})
    omp = result.get("omp_num_threads")
    quick = (
        " Quick mode (1 repeat of 10 steps): a smoke run, not a measurement."
        if result.get("quick")
        else ""
    )
    notes = (
        f"{result['steps']} steps per training or build measurement, {result['repeats']} "
        f"interleaved repeat(s), medians. isaerft's default on this machine: "
        f"{default.get('threads', '?')} thread(s) ({default.get('rule', '?')} with "
        f"{default.get('cores', '?')} cores)."
        + (f" `OMP_NUM_THREADS={omp}` was set, so torch's default was not its own." if omp else "")
        + f" Measured {m.get('created', '?')} on {m.get('platform', '?')}, load average "
        f"{num(m.get('load_average_1m'), 1)}.{quick}"
    )
    whats = "".join(
        f"- {WORKLOAD_NAMES.get(k, k)}: {e.get('what', '')}\n"
        for k, e in result["workloads"].items()
    )
    return "\n".join(
        [f"### `{result['preset']}` (`{name}.json`)\n", notes + "\n", table(header, rows), whats]
    )


def _label(label: str, threads: int) -> str:
    if label == "default":
        return f"torch default ({threads})"
    return f"{threads} thread" + ("" if threads == 1 else "s")
