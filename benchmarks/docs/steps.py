"""The step-time part of ``docs/benchmarks.md``: per-shape tables and the prefix-cache run."""

from __future__ import annotations

from typing import Any

from .poison import num, table

VARIANTS = ("floor", "isaerft", "isaerft_dense", "saelens_error_term", "full_finetune")
RERUN = """### Re-running

Timings taken on a shared or busy machine are noisy (the load average is recorded with each
result). To measure on a quiet machine:

<!-- skip: takes an hour or more and wants an idle machine -->
```bash
python -m benchmarks.step_time --shape cpu
python -m benchmarks.step_time --shape gemma-like
python -m benchmarks.step_time --shape organism
python -m benchmarks.step_time --prefix-cache
python -m benchmarks.audit_poison --mode quick      # or --mode full (hours)
python -m benchmarks.docs
```

Add `--device cuda` on a GPU machine (results are written per device).
"""


def _machine(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    quick = " (quick mode: fewer repeats)" if result.get("quick") else ""
    return (
        f"Measured {m.get('created', '?')} on {m.get('platform', '?')}, device "
        f"`{result.get('device', m.get('device', '?'))}`, torch threads: "
        f"{m.get('torch_threads', '?')}, load average {num(m.get('load_average_1m'), 1)}{quick}."
    )


def step_section(name: str, result: dict[str, Any]) -> str:
    """One step-time result: medians, memory, ratios, and the target where there is one."""
    shape = result["shape"]
    med = result["median_s"]
    saved = result["saved_for_backward_mib"]
    peak = result.get("cuda_peak_above_weights_mib") or {}
    rows = [
        [v, num(med[v] * 1000, 1), num(saved.get(v), 1), num(peak.get(v), 1)]
        for v in VARIANTS
        if v in med
    ]
    ratios = [[k.replace("_", " "), num(v, 3)] for k, v in result["ratios"].items()]
    parts = [
        f"### `{shape['name']}` (`{name}.json`)\n",
        f"d_model {shape['d_model']}, {shape['n_layers']} layers, vocab {shape['d_vocab']}, "
        f"d_sae {result['d_sae']}, hook `{shape.get('hook_name', '?')}` (depth "
        f"{num(shape.get('hook_depth'))}), batch {shape['batch']} x {shape['seq']} tokens, "
        f"{result['repeats']} interleaved repeats. " + _machine(result) + "\n",
        table(["variant", "median step (ms)", "saved for backward (MiB)", "CUDA peak (MiB)"], rows),
        table(["ratio", "value"], ratios),
    ]
    target = result.get("target")
    if target:
        verdict = "met" if target["met"] else "**not met**"
        line = (
            f"Target ISaeRFT/floor <= {target['isaerft_over_floor_max']}: {verdict} "
            f"({num(result['ratios']['isaerft_over_floor'], 3)})."
        )
        if "noise" in target:
            line += (
                f" Two identical floor steps differed by {100 * target['noise']:.1f} % in this "
                "run"
                + (
                    "; the ratio is outside that band."
                    if target["resolved"]
                    else ", so the ratio is within the timing noise: ISaeRFT's extra cost is "
                    "too small to resolve on this machine, not measured as zero."
                )
            )
        if "isaerft_over_saelens_error_term_max" in target:
            vs = "met" if target["met_vs_saelens"] else "**not met**"
            line += (
                f" Target ISaeRFT/SAELens error-term path <= "
                f"{target['isaerft_over_saelens_error_term_max']}: {vs} "
                f"({num(result['ratios']['isaerft_over_saelens_error_term'], 3)})."
            )
        parts.append(line + "\n")
    return "\n".join(parts)


def prefix_section(name: str, result: dict[str, Any]) -> str:
    """The 3-epoch prefix-cache measurement, one row per model width."""
    rows, verdicts = [], []
    for entry in result["shapes"]:
        shape, med, ratios = entry["shape"], entry["median"], entry["ratios"]
        target = entry["target"]
        rows.append(
            [
                str(shape["d_model"]),
                str(shape["n_layers"]),
                f"`{shape['hook_name']}` ({num(shape['hook_depth'])})",
                num(med["uncached"]["total_s"], 1),
                num(med["cached"]["total_s"], 1),
                num(med["cached"]["setup_s"], 1),
                num(ratios["prefix_cache_speedup_total"]),
                num(ratios["prefix_cache_speedup_fit"]),
                "met" if target["met"] else "**not met**",
            ]
        )
        verdicts.append(target["prefix_cache_speedup_total_min"])
    first = result["shapes"][0]["shape"]
    header = ["d_model", "blocks", "hook (depth)", "uncached (s)", "cached (s)",
              "cached: setup incl. cache build (s)", "speed-up", "speed-up, fit loop only",
              f"target >= {verdicts[0]}x"]  # fmt: skip
    return "\n".join(
        [
            f"### Prefix caching, 3 epochs (`{name}.json`)\n",
            f"Whole `isaerft.training.train` runs of {num(first['epochs'], 0)} epochs over "
            f"{first['rows']} organism rows (batch {first['batch_size']}) on random models with "
            "the SAE at 2/3 depth; the cached run includes building its cache. "
            f"{result['repeats']} interleaved repeat(s). " + _machine(result) + "\n",
            table(header, rows),
        ]
    )


def step_sections(results: dict[str, dict[str, Any]]) -> str:
    """All step-time results, or a note that there are none."""
    parts = ["## Step time\n"]
    if not results:
        parts.append("No result yet: run `python -m benchmarks.step_time`.\n")
    parts.append(
        "One step is forward + backward + optimizer step on the same tokens. `floor` is the "
        "frozen model with a trainable zero vector added at the hook: the least any method "
        "training at that hook must pay. Memory is what autograd saves for backward in one "
        "step.\n"
    )
    for name, result in sorted(results.items()):
        if result["benchmark"] == "step_time":
            parts.append(step_section(name, result))
    for name, result in sorted(results.items()):
        if result["benchmark"] == "step_time_prefix_cache":
            parts.append(prefix_section(name, result))
    parts.append(RERUN)
    return "\n".join(parts)
