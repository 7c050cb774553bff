"""The audit-poison part of ``docs/benchmarks.md``: tables, plain-language verdicts, plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

METHODS = {
    "audit": "ISaeRFT audit",
    "audit_change": "audit, change only",
    "topk_intersection": "top-k intersection",
    "dataset_diff": "dataset diffing",
    "activation_shift": "full-FT latent shift",
    "weight_shift": "full-FT weight shift",
}
CONTROLS = ("decoy", "benign-shift")


def num(value: Any, digits: int = 2) -> str:
    """A number for a table cell (``-`` for missing)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ci(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """``0.83 [0.67, 1.00]`` (the interval only when more than one value went in)."""
    if not entry or entry.get("value") is None:
        return "-"
    text = num(entry["value"], digits)
    lo, hi = entry.get("ci", [None, None])
    if entry.get("n", 0) > 1 and lo is not None:
        text += f" [{num(lo, digits)}, {num(hi, digits)}]"
    return text


def pct(fraction: float) -> str:
    """``0.003`` -> ``0.3 %``."""
    return f"{fraction * 100:g} %"


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _setup(result: dict[str, Any]) -> str:
    grid, hp, machine = result["grid"], result["hyperparameters"], result["machine"]
    settings = result["settings"]
    fams = ", ".join(
        f"{n} (`{f['trigger']}`, {f['split'].replace('_', ' ')})"
        for n, f in grid["families"].items()
    )
    tgts = ", ".join(f"{n} (`{t['target']}`)" for n, t in grid["targets"].items())
    tuned = hp["tuning"].get("tuned")
    null = hp["audit_null"]
    lines = [
        f"- Organism: `{result['organism']['preset']}` (seed {result['organism']['seed']}), "
        f"SAE at `{result['organism']['hook_name']}`.",
        f"- Grid: poison fractions {', '.join(pct(f) for f in grid['fractions'])}; trigger "
        f"families {fams}; targets {tgts}; controls {', '.join(grid['controls'])}; seeds "
        f"{', '.join(map(str, grid['seeds']))}; {grid['n_rows']} rows per dataset; "
        f"{grid['n_reference_runs']} reference runs on clean data.",
        f"- ISaeRFT runs: `{settings['recipe']['intervention']['component']}` components, L1 "
        f"{settings['recipe']['intervention']['l1_coefficient']}, lr "
        f"{settings['recipe']['optim']['lr']}, {settings['recipe']['trainer']['max_steps']} steps "
        f"of {settings['recipe']['data']['batch_size']} rows (fixed, not tuned). Full fine-tunes: "
        f"every weight, Adam lr {settings['finetune']['lr']}, the same steps and batch size.",
        f"- Audit null: top_m {null['top_m']}, floor fraction {null['floor_fraction']}; top-k "
        f"intersection k = {hp['topk_intersection_k']}. "
        + (
            "Tuned on the `word` family only (dev); every other family is held out."
            if tuned
            else "Defaults, not tuned (this mode skips tuning)."
        ),
        f"- A cell is *learned* when the full fine-tune's attack success on held-out trigger "
        f"prompts beats the base model's by >= {hp['learned_min_gain']}.",
        f"- Measured {machine['created']} on {machine['platform']} ({machine['cpu_count']} CPUs, "
        f"torch threads: {machine['torch_threads']}, load average "
        f"{num(machine.get('load_average_1m'), 1)}), isaerft {machine['isaerft_version']}, "
        f"torch {machine['torch']}; {num(result['timings_s']['total'], 0)} s wall clock, "
        f"{num(result.get('cpu_timings_s', {}).get('total'), 0)} s CPU.",
    ]
    return "\n".join(lines) + "\n"


def _headline(summary: dict[str, Any]) -> str:
    out = []
    for kind in CONTROLS:
        per_split = summary["headline"].get(kind)
        if not per_split:
            continue
        rows = []
        for split, entry in per_split.items():
            for subset in ("all_cells", "learned_cells"):
                rates = entry[subset]["detection_rate_at_5pct_fpr"]
                n = entry["n_groups"] if subset == "all_cells" else entry["n_learned_groups"]
                rows.append(
                    [
                        split.replace("_", " "),
                        subset.replace("_", " "),
                        str(n),
                        *(num(rates.get(m)) for m in METHODS),
                    ]
                )
        out.append(f"**Against {kind}** (mean detection rate at 5 % FPR over groups):\n")
        out.append(table(["split", "cells", "groups", *METHODS.values()], rows))
        for split in ("all", "held_out"):
            if split not in per_split:
                continue
            entry = per_split[split]["all_cells"]
            beats = [METHODS[m] for m, b in entry["audit_beats"].items() if b]
            loses = [METHODS[m] for m, b in entry["audit_beats"].items() if b is False]
            where = "over all cells" if split == "all" else "on the held-out families"
            text = f"Against {kind}, {where}, the audit beats: {', '.join(beats) or 'none'}"
            text += f"; it does **not** beat (ties included): {', '.join(loses)}." if loses else "."
            out.append(text + "\n")
        n_controls = [
            det["n_control"]
            for g in summary["groups"]
            if (det := g["detection"].get(kind, {}).get("0.05", {}).get("audit"))
        ]
        if n_controls and max(n_controls) < 20:
            out.append(
                f"Each {kind} threshold rests on {_span(n_controls)} matched "
                "control run(s), too few to resolve a 5 % (let alone 1 %) false-positive rate "
                "empirically: with one run a rate only says whether the poison scored above its "
                "matched control; with a few, the threshold is a Gumbel extrapolation. Read these "
                "rates with their intervals.\n"
            )
    return "\n".join(out)


def _groups(summary: dict[str, Any]) -> str:
    rows = []
    for g in summary["groups"]:
        learned = g["learned"]
        note = "" if (learned["value"] or 0) > 0.5 else " (not learned)"
        recall = g["recall"]["audit"]["any"]
        det = {k: g["detection"].get(k, {}).get("0.05", {}).get("audit") for k in CONTROLS}
        rows.append(
            [
                g["family"],
                g["split"].replace("_", " "),
                g["target"],
                pct(g["fraction"]),
                "/".join(map(str, g["n_poisoned"])),
                ci(learned) + note,
                ci(g["attack_success"]),
                ci(recall["1"]),
                ci(recall["5"]),
                ci(recall["10"]),
                ci(g["rows"]["row_auroc"]),
                ci(g["rows"]["precision_at_n_poisoned"]),
                *(ci(det[k]) for k in CONTROLS),
            ]
        )
    header = [
        "trigger",
        "split",
        "target",
        "p",
        "poisoned rows",
        "learned",
        "full-FT ASR",
        "recall@1",
        "recall@5",
        "recall@10",
        "row AUROC",
        "precision@n",
        *(f"detect vs {k} @5 %" for k in CONTROLS),
    ]
    return table(header, rows)


def _baselines(summary: dict[str, Any]) -> str:
    rows = []
    for g in summary["groups"]:
        for kind in CONTROLS:
            for fpr in ("0.01", "0.05"):
                det = g["detection"].get(kind, {}).get(fpr)
                if det is None:
                    continue
                rows.append(
                    [
                        g["family"],
                        g["target"],
                        pct(g["fraction"]),
                        kind,
                        pct(float(fpr)),
                        str(det["audit"].get("n_control", "-")),
                        *(ci(det[m]) for m in METHODS),
                    ]
                )
    header = ["trigger", "target", "p", "control", "FPR", "control runs", *METHODS.values()]
    return table(header, rows)


def _recall(summary: dict[str, Any]) -> str:
    rows = []
    for g in summary["groups"]:
        for m, per_role in g["recall"].items():
            rows.append(
                [
                    g["family"],
                    g["target"],
                    pct(g["fraction"]),
                    METHODS[m],
                    *(
                        ci(per_role[role][k])
                        for role in ("trigger", "target")
                        for k in ("1", "5", "10")
                    ),
                ]
            )
    header = [
        "trigger",
        "target",
        "p",
        "method",
        "trigger r@1",
        "trigger r@5",
        "trigger r@10",
        "target r@1",
        "target r@5",
        "target r@10",
    ]
    return table(header, rows)


def _smallest(summary: dict[str, Any]) -> str:
    rows = []
    for name, kinds in summary["smallest_fraction_detected"].items():
        for kind, per_method in kinds.items():
            rows.append(
                [
                    name,
                    kind,
                    *(
                        pct(p) if p is not None else "none"
                        for p in (per_method.get(m) for m in METHODS)
                    ),
                ]
            )
    return table(["trigger/target", "control", *METHODS.values()], rows)


def _controls(summary: dict[str, Any]) -> str:
    rows = [
        [
            c["kind"],
            str(c["n_runs"]),
            ci(c["flagged_at_clean_null"]["0.05"]),
            ci(c["flagged_at_clean_null"]["0.01"]),
        ]
        for c in summary["controls"]
    ]
    return table(["control", "runs", "flagged (5 % null)", "flagged (1 % null)"], rows)


def _own_verdicts(summary: dict[str, Any]) -> str:
    rows = [
        [
            c["kind"] + (f" {pct(c['fraction'])}" if c["kind"] == "poison" else ""),
            str(c["n_runs"]),
            *(ci(c["flagged"][m]) for m in ("audit", "dataset_diff", "topk_intersection")),
        ]
        for c in summary.get("own_verdicts", [])
    ]
    if not rows:
        return "(not recorded in this result file)\n"
    headers = ["runs", "n", "ISaeRFT audit", "dataset diffing", "top-k intersection"]
    return table(headers, rows)


def _plots(name: str, summary: dict[str, Any], image_dir: Path, prefix: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(CONTROLS) + 1, figsize=(5 * (len(CONTROLS) + 1), 3.6))
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for g in summary["groups"]:
        for kind in CONTROLS:
            for m in METHODS:
                det = g["detection"].get(kind, {}).get("0.05", {}).get(m, {})
                if det.get("value") is not None:
                    series.setdefault((kind, m), []).append((g["fraction"], det["value"]))
        value = g["recall"]["audit"]["any"]["5"]["value"]
        if value is not None:
            key = ("recall", f"{g['family']}/{g['target']}")
            series.setdefault(key, []).append((g["fraction"], value))
    for ax, kind in zip(axes, CONTROLS):
        for m, label in METHODS.items():
            pts = _mean_by_x(series.get((kind, m), []))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set(
            xscale="log",
            xlabel="poison fraction",
            ylabel="detection rate @ 5 % FPR",
            title=f"vs {kind} (mean over groups)",
            ylim=(-0.05, 1.05),
        )
        _legend(ax)
    ax = axes[-1]
    for (what, label), pts in series.items():
        if what == "recall":
            ax.plot(*zip(*sorted(pts)), marker="o", label=label)
    ax.set(
        xscale="log",
        xlabel="poison fraction",
        ylabel="audit recall@5",
        title="ground-truth latents in the audit's top 5",
        ylim=(-0.05, 1.05),
    )
    _legend(ax)
    fig.tight_layout()
    path = image_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![{name}]({prefix}/{path.name})\n"


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _mean_by_x(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    by_x: dict[float, list[float]] = {}
    for x, y in points:
        by_x.setdefault(x, []).append(y)
    return [(x, sum(v) / len(v)) for x, v in sorted(by_x.items())]


def poison_section(name: str, result: dict[str, Any], image_dir: Path, prefix: str) -> str:
    """The Markdown of one audit-poison result."""
    summary = result["summary"]
    parts = [
        f"## Audit-poison: {result['mode']} mode (`{name}.json`)\n",
        _setup(result),
        "### Headline\n",
        _headline(summary),
        "### Per group (ISaeRFT audit)\n",
        "Values are means over seeds with bootstrap 95 % intervals (shown when there is more "
        "than one seed). recall@k counts the ground-truth trigger and target latents in the "
        "audit's top k, out of min(k, their number). Detection thresholds are set on the "
        "matched control runs (same trigger, target and fraction).\n",
        _groups(summary),
        _plots(name, summary, image_dir, prefix),
        "### Detection rate, every method\n",
        _baselines(summary),
        "### Recall@k by role, every latent-ranking method\n",
        _recall(summary),
        "### Smallest poison fraction detected (rate >= 0.9 at 5 % FPR)\n",
        _smallest(summary),
        "### The audit's own verdict on controls (null from clean reference runs)\n",
        _controls(summary),
        "### Every method's own verdict (its own null, 5 % FPR)\n",
        "How a user reads each method: the share of runs it flags by its own calibrated "
        "threshold (the audit's verdict; dataset diffing's permutation null; the top-k "
        "intersection method's reference-run null at its per-latent k). On poison rows this is "
        "the detection rate, on controls the false-positive rate.\n",
        _own_verdicts(summary),
    ]
    return "\n".join(parts)
