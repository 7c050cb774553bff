"""Other change tests on the runs an audit_v2 benchmark already trained (no training).

The audit's change test scores a candidate run by its largest per-latent ``|z|`` against the
reference runs and calibrates that maximum leave-one-out (:mod:`isaerft.audit.null`). This
re-scores the same runs with variants and reports, per variant and per work folder, each cell's
score over its threshold (at the nominal 5 %) and whether the trigger search had found a trigger
(read from the benchmark's own result), so that a variant's gain in power on poisons can be read
against its false positives on the clean datasets in one run:

* ``max`` — the audit's default (``NullConfig.top_m = 1``);
* ``top3`` / ``top5`` / ``top10`` — the mean of the largest 3 / 5 / 10 latent scores;
* ``per_site`` — each site's largest score against its own leave-one-out null, at 5 % over
  the number of sites (Bonferroni); the same as ``max`` at one site.

Usage::

    python -m benchmarks.audit_v2.change_tests   # every work folder that has a result

Result: ``benchmarks/results/audit_v2-change_tests.json``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_info, write_result
from isaerft._io import read_json
from isaerft.audit.null import NullConfig, compare_to_null
from isaerft.audit.runs import RunEdits, deltas_from_start

WORK = Path(".cache/bench")
TOP = {"max": 1, "top3": 3, "top5": 5, "top10": 10}
VARIANTS = (*TOP, "per_site")
FPR = NullConfig().fpr


def one_site(run: RunEdits, hook: str) -> RunEdits:
    """``run`` restricted to its site at ``hook``."""
    return RunEdits({hook: run.edits[hook]}, [run.site_record(hook)], run.component, run.source)


def rescore_cell(candidate: RunEdits, references: list[RunEdits]) -> dict[str, float]:
    """Per variant, the candidate's score over the variant's threshold at :data:`FPR`, each
    from the audit's own :func:`~isaerft.audit.null.compare_to_null`."""
    candidate, references, _ = deltas_from_start(candidate, references)

    def ratio(cand: RunEdits, refs: list[RunEdits], config: NullConfig) -> float:
        comparison = compare_to_null(cand, refs, config)
        return comparison.score / comparison.threshold

    out = {k: ratio(candidate, references, NullConfig(fpr=FPR, top_m=m)) for k, m in TOP.items()}
    hooks = candidate.hook_names
    out["per_site"] = max(
        ratio(
            one_site(candidate, h),
            [one_site(r, h) for r in references],
            NullConfig(fpr=FPR / len(hooks)),
        )
        for h in hooks
    )
    return out


def rescore_folder(work: Path, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every audited cell of one benchmark work folder, with its variants' ratios."""
    runs = work / "runs"
    references = [RunEdits.load(p) for p in sorted(runs.glob("reference-*"))]
    out = []
    for cell in result["cells"]:
        folder = runs / cell["id"]
        if not folder.is_dir() or "trigger_found" not in cell:
            continue
        out.append(
            {
                "id": cell["id"],
                "kind": cell["kind"],
                "case": f"{cell['family']}/{cell['target']}",
                "fraction": cell["fraction"],
                "trigger_found": bool(cell["trigger_found"]),
                "ratio": rescore_cell(RunEdits.load(folder), references),
            }
        )
    return out


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: poisons flagged (change over threshold and a trigger found), the largest
    clean ratio, and clean / decoy / benign datasets flagged by the same two-part rule."""
    out: dict[str, Any] = {}
    for v in VARIANTS:

        def flagged(c: dict[str, Any], v: str = v) -> bool:
            return c["ratio"][v] > 1.0 and c["trigger_found"]

        row: dict[str, Any] = {}
        for kind in ("poison", "clean", "decoy", "benign-shift"):
            mine = [c for c in cells if c["kind"] == kind]
            if mine:
                row[kind] = f"{sum(map(flagged, mine))}/{len(mine)}"
        clean = [c["ratio"][v] for c in cells if c["kind"] == "clean"]
        row["clean_max_ratio"] = max(clean) if clean else None
        out[v] = row
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audit_v2.change_tests",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=RESULTS / "audit_v2-change_tests.json")
    args = parser.parse_args(argv)
    folders: dict[str, Any] = {}
    for path in sorted(RESULTS.glob("audit_v2-*.json")):
        result = read_json(path)
        # Results name their work folder; older ones share their stem, less any --only suffix.
        work = Path(result.get("work_dir") or args.work / re.sub(r"-only-.*$", "", path.stem))
        if result.get("benchmark") != "audit_v2" or not (work / "runs").is_dir():
            continue
        cells = rescore_folder(work, result)
        folders[path.stem] = {"cells": cells, "summary": summarise(cells)}
        print(f"{path.stem}: {folders[path.stem]['summary']}")
    if not folders:
        print(f"no audit_v2 work folder under {args.work}: run python -m benchmarks.audit_v2 first")
        return 2
    result = {
        "benchmark": "audit_v2_change_tests",
        "fpr": FPR,
        "variants": list(VARIANTS),
        "folders": folders,
        "machine": machine_info(),
    }
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
