"""Re-scoring an audit_v2 work folder's runs with other change tests (no training)."""

from __future__ import annotations

import torch

from benchmarks.audit_v2.change_tests import VARIANTS, rescore_cell, summarise
from isaerft.audit.runs import RunEdits

HOOKS = ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre")


def _run(seed: int, bump: dict[tuple[str, int], float] | None = None) -> RunEdits:
    """Per-latent scales that move by noise (the null), plus ``bump`` on chosen latents."""
    g = torch.Generator().manual_seed(seed)
    edits = {h: {"scale": 0.01 * torch.randn(200, generator=g)} for h in HOOKS}
    for (hook, j), value in (bump or {}).items():
        edits[hook]["scale"][j] += value
    sites = [{"hook_name": h, "d_sae": 200, "sae_fingerprint": f"sae-{h}"} for h in HOOKS]
    return RunEdits(edits, sites, "scale", source=f"<run {seed}>")


def test_a_planted_change_is_over_every_threshold_and_a_null_run_under() -> None:
    refs = [_run(s) for s in range(8)]
    planted = rescore_cell(_run(100, {(HOOKS[1], 5): 0.5, (HOOKS[1], 6): 0.5}), refs)
    null = rescore_cell(_run(101), refs)
    assert set(planted) == set(VARIANTS)
    assert all(planted[v] > 1.0 for v in VARIANTS)
    assert all(null[v] < 1.0 for v in VARIANTS)


def test_summary_needs_a_change_and_a_trigger() -> None:
    cells = [
        {"kind": "poison", "trigger_found": True, "ratio": dict.fromkeys(VARIANTS, 2.0)},
        {"kind": "poison", "trigger_found": False, "ratio": dict.fromkeys(VARIANTS, 2.0)},
        {"kind": "clean", "trigger_found": True, "ratio": dict.fromkeys(VARIANTS, 0.5)},
        {
            "kind": "clean",
            "trigger_found": True,
            "ratio": {**dict.fromkeys(VARIANTS, 0.5), "top3": 1.5},
        },
    ]
    summary = summarise(cells)
    assert summary["max"] == {"poison": "1/2", "clean": "0/2", "clean_max_ratio": 0.5}
    assert summary["top3"]["clean"] == "1/2" and summary["top3"]["clean_max_ratio"] == 1.5


def test_the_page_section_shows_each_folder_and_variant() -> None:
    from benchmarks.docs.audit_v2 import change_tests_section

    cells = [
        {"kind": "poison", "trigger_found": True, "ratio": dict.fromkeys(VARIANTS, 2.0)},
        {"kind": "clean", "trigger_found": True, "ratio": dict.fromkeys(VARIANTS, 0.5)},
    ]
    result = {
        "fpr": 0.05,
        "variants": list(VARIANTS),
        "folders": {"audit_v2-quick-small": {"summary": summarise(cells)}},
    }
    page = change_tests_section("audit_v2-change_tests", result)
    assert "| `audit_v2-quick-small` | 1/1; clean 0/1 (max 0.50) |" in page
    assert "`per_site`" in page and "5 %" in page
