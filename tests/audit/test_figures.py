"""The report's figures: drawn from the JSON alone, and left out when their data is missing."""

from __future__ import annotations

from isaerft.audit.figures import figures_png
from isaerft.audit.report import new_report


def minimal_report() -> dict:
    report = new_report()
    report["latents"] = [
        {"hook_name": "h", "index": 3, "label": "the word zebra", "edits": {"scale": 0.4},
         "impact": 0.4, "z": 9.0, "flagged": True},
    ]  # fmt: skip
    report["distributions"] = {"edits": {"h": {"scale": [0.0, 0.1, 0.4]}}, "z": {"h": [0.1, -1, 9]}}
    report["rows"] = {"method": "excess_gain", "threshold": 1.0, "scores": [0.1, 5.0, 0.2],
                      "reference_scores": [0.1, 0.3]}  # fmt: skip
    return report


def test_every_figure_is_a_png() -> None:
    figures = figures_png(minimal_report())
    assert set(figures) == {"top_latents", "changes", "row_scores"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())


def test_a_report_without_latents_or_rows_has_no_figures() -> None:
    assert figures_png(new_report()) == {}


def test_a_report_without_row_scores_leaves_out_only_that_figure() -> None:
    report = minimal_report()
    del report["rows"]
    assert set(figures_png(report)) == {"top_latents", "changes"}
