"""Report rendering from JSON alone, its schema version check, and the suspects file."""

from __future__ import annotations

import json

import pytest
import torch

from isaerft.audit.data import AuditData
from isaerft.audit.figures import figures_png
from isaerft.audit.html import render_html
from isaerft.audit.report import (
    new_report,
    read_report,
    render_markdown,
    write_report,
    write_suspects,
)
from isaerft.audit.rowscores import RowScores


def minimal_report() -> dict:
    report = new_report()
    report["candidate"] = {"source": "runs/c", "component": "scale"}
    report["verdict"] = {"flagged": True, "score": 9.0, "threshold": 4.0, "latent_threshold": 4.0,
                         "fpr": 0.05, "gumbel_p_value": 0.001, "dataset_p_value": 0.1,
                         "n_reference_runs": 8}  # fmt: skip
    report["latents"] = [
        {"hook_name": "h", "index": 3, "label": "the word | zebra", "edits": {"scale": 0.4},
         "impact": 0.4, "z": 9.0, "p_value": 0.001, "flagged": True, "firing_frequency": 0.01,
         "mean_activation": 0.02, "effective_contribution": 0.001,
         "contexts": [{"row": 1, "position": 2, "activation": 1.5, "left": "a ", "token": "<b>",
                       "right": " c", "marked": "a «<b>» c"}]},
    ]  # fmt: skip
    report["distributions"] = {"edits": {"h": {"scale": [0.0, 0.1, 0.4]}}, "z": {"h": [0.1, -1, 9]}}
    report["rows"] = {"method": "activation", "threshold": 1.0, "n_rows": 3, "n_suspects": 1,
                      "suspects": [1], "top": [{"row": 1, "score": 5.0, "preview": "x"}],
                      "scores": [0.1, 5.0, 0.2], "reference_scores": [0.1, 0.3]}  # fmt: skip
    return report


def test_markdown_and_html_render_from_json(tmp_path) -> None:
    report = minimal_report()
    md = render_markdown(report)
    assert "**FLAGGED**" in md and "the word \\| zebra" in md and "`a «<b>» c`" in md
    figures = figures_png(report)
    assert set(figures) == {"top_latents", "changes", "row_scores"}
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    page = render_html(report, figures)
    assert "<mark>&lt;b&gt;</mark>" in page  # escaped, marked
    paths = write_report(report, tmp_path, image_dir="img")
    assert (tmp_path / "img" / "top_latents.png").is_file()
    assert "](img/top_latents.png)" in paths["md"].read_text()
    assert read_report(tmp_path)["verdict"]["score"] == 9.0


def test_newer_schema_is_refused(tmp_path) -> None:
    report = minimal_report()
    report["schema_version"] = 99
    (tmp_path / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="upgrade isaerft"):
        read_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match="not an isaerft audit report"):
        read_report(tmp_path)


def test_write_suspects_ranks_every_row(tmp_path) -> None:
    rows = [{"prompt": f"User: q{i}\nAssistant:", "completion": f" a{i}"} for i in range(4)]
    data = AuditData([torch.tensor([1, 2])] * 4, [1] * 4, rows, "x.jsonl")
    scores = RowScores(torch.tensor([0.1, 3.0, 0.2, 2.0]), threshold=1.0, method="activation")
    assert scores.suspects == [1, 3]
    path = write_suspects(tmp_path / "suspects.jsonl", scores, data)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["row"] for r in lines] == [1, 3, 2, 0]
    assert [r["suspect"] for r in lines] == [True, True, False, False]
    assert lines[0]["rank"] == 1 and lines[0]["score"] == pytest.approx(3.0)
    assert lines[0]["preview"] == "User: q1 Assistant: a1"
