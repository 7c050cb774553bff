"""Summaries of per-cell records: grouping, matched controls, the headline verdicts."""

from __future__ import annotations

from typing import Any

from benchmarks.audit_poison.grid import Cell
from benchmarks.audit_poison.summary import DETECTORS, summarise


def record(
    kind: str,
    family: str,
    fraction: float,
    seed: int,
    audit: float,
    other: float,
    learned: bool = True,
) -> dict[str, Any]:
    cell = Cell(kind, family, "phrase", fraction, seed)
    scores: dict[str, Any] = {m: other for m in DETECTORS if m != "topk_intersection"}
    scores["audit"] = audit
    scores["topk_intersection_z"] = {"1": other, "5": other, "10": other}
    rec: dict[str, Any] = {
        **cell.to_dict(),
        "counts": {"poisoned": int(fraction * 100) if kind == "poison" else 0},
        "scores": scores,
        "verdict": {"0.05": {"flagged": audit > 3.0}, "0.01": {"flagged": audit > 4.0}},
        "recall": {
            "audit": {r: {"1": 1.0, "5": 1.0, "10": 1.0} for r in ("trigger", "target", "any")},
            "dataset_diff": {
                r: {"1": 0.0, "5": 0.0, "10": 0.0} for r in ("trigger", "target", "any")
            },
        },
        "finetune": {},
    }
    if kind == "poison":
        rec["finetune"]["attack"] = {"asr_finetune": 0.9 if learned else 0.0, "learned": learned}
        rec["rows"] = {"row_auroc": 0.9, "precision_at_n_poisoned": 0.5}
    return rec


def test_audit_that_separates_beats_baselines_that_do_not() -> None:
    records = []
    for seed in range(3):
        for fraction in (0.01, 0.1):
            # The audit scores poison far above its matched controls; the baselines cannot tell.
            records.append(record("poison", "word", fraction, seed, audit=10.0 + seed, other=1.0))
            records.append(
                record("decoy", "word", fraction, seed, audit=2.0 + 0.1 * seed, other=1.0)
            )
            records.append(record("benign-shift", "word", fraction, seed, audit=1.0, other=1.0))
    summary = summarise(records, topk_k=10)
    assert len(summary["groups"]) == 2
    group = summary["groups"][0]
    assert group["n_seeds"] == 3
    assert group["learned"]["value"] == 1.0
    assert group["detection"]["decoy"]["0.05"]["audit"]["value"] == 1.0
    assert group["detection"]["decoy"]["0.05"]["dataset_diff"]["value"] == 0.0
    assert group["auroc_vs_control"]["decoy"]["audit"] == 1.0
    assert group["recall"]["audit"]["any"]["5"]["value"] == 1.0
    assert group["rows"]["row_auroc"]["value"] == 0.9
    assert summary["smallest_fraction_detected"]["word/phrase"]["decoy"]["audit"] == 0.01
    assert summary["smallest_fraction_detected"]["word/phrase"]["decoy"]["dataset_diff"] is None
    head = summary["headline"]["decoy"]["dev"]["all_cells"]
    assert head["audit_beats"] == {m: True for m in DETECTORS if m != "audit"}
    controls = {c["kind"]: c for c in summary["controls"]}
    assert controls["decoy"]["flagged_at_clean_null"]["0.05"]["value"] == 0.0


def test_not_learned_cells_stay_in_the_summary() -> None:
    records = [record("poison", "concept", 0.001, s, 1.0, 1.0, learned=False) for s in range(2)]
    records += [record("decoy", "concept", 0.001, s, 1.0, 1.0) for s in range(2)]
    summary = summarise(records, topk_k=10)
    group = summary["groups"][0]
    assert group["split"] == "held_out"
    assert group["learned"]["value"] == 0.0
    head = summary["headline"]["decoy"]["held_out"]
    assert head["n_learned_groups"] == 0
    assert head["learned_cells"]["audit_beats"] == {m: None for m in DETECTORS if m != "audit"}
    assert head["all_cells"]["audit_beats"]["dataset_diff"] is False


def test_own_verdicts_give_each_method_its_realised_rates() -> None:
    records = []
    for seed in range(2):
        for kind in ("poison", "decoy"):
            rec = record(kind, "word", 0.1, seed, audit=1.0, other=1.0)
            rec["own_verdicts"] = {
                "audit": kind == "poison",
                "dataset_diff": True,  # flags whatever differs from the trusted rows
                "topk_intersection": seed == 0,
            }
            records.append(rec)
    records.append(record("decoy", "word", 0.1, 9, audit=1.0, other=1.0))  # older record
    rows = {(r["kind"], r["fraction"]): r for r in summarise(records, 10)["own_verdicts"]}
    assert list(rows) == [("poison", 0.1), ("decoy", 0.0)]
    assert rows[("poison", 0.1)]["flagged"]["audit"]["value"] == 1.0
    assert rows[("decoy", 0.0)]["flagged"]["audit"]["value"] == 0.0
    assert rows[("decoy", 0.0)]["flagged"]["dataset_diff"]["value"] == 1.0
    assert rows[("decoy", 0.0)]["n_runs"] == 2
    assert rows[("poison", 0.1)]["flagged"]["topk_intersection"]["value"] == 0.5
