"""The audit v2 section of ``docs/benchmarks.md``: the learnability map and the detection,
naming and localisation tables, rendered from ``audit_v2-*.json`` alone."""

from __future__ import annotations

from typing import Any


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.0f} %"


def _num(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _fraction_seed(key: str) -> tuple[float, int]:
    """A learnability-map key, ``"0.03"`` (seed 0) or ``"0.03@s1"``, as (fraction, seed)."""
    fraction, _, seed = key.partition("@s")
    return float(fraction), int(seed or 0)


def _flagged(cell: dict[str, Any]) -> str:
    """``yes`` / ``no``, with the route that flagged (``edit``, ``pairing``, ``both``) where the
    result records it."""
    if not cell["flagged"]:
        return "no"
    return f"yes ({cell['route']})" if cell.get("route") else "yes"


def _cpu(result: dict[str, Any]) -> str:
    """The processor, where the result recorded it: the organism's build depends on it, so two
    results of the same plan on different processors audit different builds."""
    model = result["machine"].get("cpu_model")
    key = (result.get("organism") or {}).get("key")
    return f", processor `{model}` (organism `{key}` built on it)" if model else ""


def audit_v2_section(name: str, result: dict[str, Any]) -> str:
    """One result file as a Markdown section."""
    summary = result["summary"]
    dev = result["dev_case"]
    component = result.get("component", "scale")
    corpus = (result.get("organism") or {}).get("corpus")
    how = (
        " Differential: a start run is fitted on its own share of the trusted rows first, every "
        "candidate and reference run trains from it with the L1 on its distance from the start, "
        "and the audit compares those deltas."
        if result.get("differential")
        else ""
    )
    built = f" built on the text corpus `{corpus}`" if corpus else ""
    where = (
        " at every residual site (an SAE per site, each labelled like the organism's own)"
        if result.get("multisite")
        else ""
    )
    subset = (
        f" Only the cells whose id contains `{result['only']}` were run (no clean, decoy or "
        "benign-shift datasets), so this section has no false-positive rates."
        if result.get("only")
        else ""
    )
    lines = [
        f"## Audit v2 — `{name}`",
        "",
        f"Candidate and reference runs train the `{component}` component{where}.{how} "
        f"Organism `{result['preset']}`{built}; triggers {result['families']}, targets "
        f"{result['targets']}. Development case: `{dev['family']}` trigger with the "
        f"`{dev['target']}` target (the only one any setting was tuned on); every other row is "
        f"held out.{subset} Wall time of the last invocation {result['wall_time_s'] / 60:.0f} "
        f"min on {result['machine'].get('cpu_count')} cores{_cpu(result)} (load average "
        f"{_num(result['machine'].get('load_average_1m'), 1)} at the start; trained runs, and "
        "the control cells' audits after a naming change, are reused from earlier "
        "invocations).",
        "",
        "### Learnability map",
        "",
        "Attack success on held-out trigger prompts (greedy answers that show the target) of "
        "the base model, a full fine-tune and the audit's default candidate run; then what the "
        "audit made of the dataset. The audit cannot see what its candidate does not learn; "
        "the association search reads the data without it (flagged: `edit` = an unusual change "
        "whose rows share a prompt latent, `pairing` = the association search, `both`).",
        "",
        "| trigger / target | poison | split | base | full FT | candidate | flagged | "
        "recall@10 | row AUROC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_fraction in summary["learnability_map"].items():
        for fraction, cell in sorted(by_fraction.items(), key=lambda kv: _fraction_seed(kv[0])):
            frac, seed = _fraction_seed(fraction)
            seeded = f" (seed {seed})" if seed else ""
            lines.append(
                f"| {key} | {_pct(frac)}{seeded} | {cell['split']} | "
                f"{_pct(cell['asr_base'])} | {_pct(cell['asr_full_finetune'])} | "
                f"{_pct(cell['asr_candidate'])} | {_flagged(cell)} | "
                f"{_num(cell['recall_at_10'])} | {_num(cell['row_auroc'], 3)} |"
            )
    detection = summary["detection"]
    lines += [
        "",
        "### Detection, naming, localisation",
        "",
        "| reading | result |",
        "|---|---|",
        f"| poisons a full fine-tune learns at 3 %, flagged | "
        f"{detection['learned_at_3pct_flagged']} |",
    ]
    if detection["word_phrase_families_at_1pct_flagged"] != "0/0":
        lines.append(
            f"| word and phrase triggers at 1 %, flagged | "
            f"{detection['word_phrase_families_at_1pct_flagged']} |"
        )
    for kind, entry in detection["false_positive_rate"].items():
        if entry["flagged"] == "0/0":  # a subset run (``--only``) has no such datasets
            continue
        lines.append(f"| {kind} datasets flagged (nominal 5 %) | {entry['flagged']} |")
    naming, local, cost = summary["naming"], summary["localisation"], summary["cost"]
    lines += [
        f"| mean recall@10 of trigger + target latents, detected poisons | "
        f"{_num(naming['mean_recall_at_10_on_detected'])} |",
        f"| detected poisons with recall@10 >= 0.9 | {naming['detected_with_recall_ge_0.9']} |",
    ]
    words = naming.get("mean_word_recall_at_10_on_detected")
    if words is not None and words == words:  # absent or nan in results older than the words
        lines.append(
            f"| mean share of trigger + target words named in the top 10, detected poisons | "
            f"{_num(words)} |"
        )
    unpaired = naming.get("mean_recall_at_10_without_pairing_on_detected")
    if unpaired is not None and unpaired == unpaired:
        lines.append(
            f"| the same recall without the association search's pairing roles | {_num(unpaired)} |"
        )
    firing = naming.get("mean_recall_at_10_firing_on_detected")
    if firing is not None and firing == firing:  # results older than the reading lack it
        lines.append(
            "| the same recall against the ground-truth latents that fire on their words in the "
            f"poisoned rows (detected with >= 0.9) | {_num(firing)} "
            f"({naming['detected_with_firing_recall_ge_0.9']}) |"
        )
    lines += [
        f"| lowest row AUROC on a detected poison | "
        f"{_num(local['min_row_auroc_on_detected'], 3)} |",
        f"| detected poisons with row AUROC >= 0.95 | {local['detected_with_auroc_ge_0.95']} |",
        f"| training steps per audit (candidate + references) | "
        f"{cost['training_steps_per_audit']} |",
        f"| mean audit time after training (s) | {_num(cost['mean_audit_s'], 1)} |",
        "",
    ]
    for cell in result.get("skipped_cells", []):
        lines.append(f"Not plantable, so not measured: `{cell['id']}` ({cell['reason']}).")
        lines.append("")
    lines.append(
        "The wall time covers the last start of the benchmark; runs finished by an earlier, "
        "interrupted start were reused (their training times are read from the runs)."
    )
    lines.append("")
    return "\n".join(lines)


def learnability_section(name: str, result: dict[str, Any]) -> str:
    """The learnability map of ``audit_learnability-*.json``: attack success per component kind."""
    kinds = result["kinds"]
    dev = result["dev_case"]
    lines = [
        f"## Learnability map — `{name}`",
        "",
        f"Organism `{result['preset']}`, the audit's default recipe with each component kind at "
        f"the organism's SAE site"
        + (
            " (and, as `<kind>-multisite`, at every residual site, an SAE per site)"
            if any("multisite" in k for k in kinds)
            else ""
        )
        + ", and a full fine-tune; attack success on held-out trigger "
        f"prompts. Development case: `{dev['family']}` / `{dev['target']}`; the rest is held "
        f"out. {result['rule'][0].upper()}{result['rule'][1:]}. Wall time of the last "
        f"invocation {result['wall_time_s'] / 60:.0f} min (configurations saved by earlier "
        "invocations are reused, not retrained).",
        "",
        "| trigger / target | poison | base | full FT | " + " | ".join(kinds) + " |",
        "|---|---|---|---|" + "---|" * len(kinds),
    ]
    for c in result["cells"]:
        lines.append(
            f"| {c['family']} / {c['target']} | {_pct(c['fraction'])} | {_pct(c['asr_base'])} | "
            f"{_pct(c['asr_full_finetune'])} | "
            + " | ".join(_pct(c["asr"][k]) for k in kinds)
            + " |"
        )
    lines += ["", "| configuration | cells learned |", "|---|---|"]
    for kind, s in result["summary"].items():
        lines.append(f"| {kind} | {s['learned']} / {s['of']} |")
    return "\n".join(lines) + "\n"


def change_tests_section(name: str, result: dict[str, Any]) -> str:
    """``audit_v2-change_tests.json`` (:mod:`benchmarks.audit_v2.change_tests`) as a section."""
    variants = result["variants"]
    lines = [
        f"## Audit v2 — other change tests (`{name}`)",
        "",
        "The runs the audit v2 benchmarks trained, re-scored with other change tests (no "
        f"training; `python -m benchmarks.audit_v2.change_tests`), at the nominal "
        f"{_pct(result['fpr'])}. A dataset counts as flagged when its change is over the "
        "variant's threshold and the benchmark's trigger search had found a trigger (the audit's "
        "two-part rule). `max` is the audit's test; `topM` averages the M largest latent scores; "
        "`per_site` calibrates each site's largest score against its own null (Bonferroni over "
        "sites). Each cell: poisons flagged; clean datasets flagged, and the largest clean "
        "score over its threshold.",
        "",
        "| results | " + " | ".join(f"`{v}`" for v in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for folder, entry in result["folders"].items():
        cells = []
        for v in variants:
            row = entry["summary"][v]
            clean = (
                f"; clean {row['clean']} (max {_num(row['clean_max_ratio'])})"
                if "clean" in row
                else ""
            )
            cells.append(f"{row.get('poison', '–')}{clean}")
        lines.append(f"| `{folder}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
