"""The torch-threads section of the benchmarks page, from a synthetic ``threads-*.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.docs.page import load_results, render
from benchmarks.threads.run import summarize, thread_settings


def threads_result(preset: str) -> dict[str, Any]:
    samples = {"1": [1800.0, 1863.0, 1900.0], "2": [2500.0], "default": [270.0]}
    workload = {"what": "40 steps", "tokens_per_s": samples, **summarize(samples)}
    return {
        "benchmark": "threads",
        "preset": preset,
        "steps": 40,
        "repeats": 3,
        "quick": False,
        "settings": {"1": 1, "2": 2, "default": 16},
        "isaerft_default": {"threads": 2, "cores": 16, "rule": "min(2, cores - 1)"},
        "omp_num_threads": None,
        "workloads": {"train": workload, "audit_forward": workload},
        "wall_time_s": 60.0,
        "machine": {"created": "2024-01-01", "platform": "linux", "load_average_1m": 0.2},
    }


def test_summary_is_medians_and_ratios_to_one_thread() -> None:
    summary = summarize({"1": [1.0, 3.0, 2.0], "2": [3.0], "default": [1.0]})
    assert summary["median_tokens_per_s"] == {"1": 2.0, "2": 3.0, "default": 1.0}
    assert summary["ratio_to_1"] == {"1": 1.0, "2": 1.5, "default": 0.5}
    assert thread_settings(8) == {"1": 1, "2": 2, "default": 8}


def test_the_section_renders_when_a_result_exists(tmp_path: Path) -> None:
    assert "## Torch threads" not in render({}, tmp_path / "img", "img")
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "threads-small.json").write_text(json.dumps(threads_result("small")))
    page = render(load_results(folder), tmp_path / "img", "img")
    assert "## Torch threads" in page and "### `small` (`threads-small.json`)" in page
    header = (
        "| workload | 1 thread (tokens/s) | 2 threads (tokens/s) | torch default (16) (tokens/s) "
        "| 2 threads / 1 | torch default (16) / 1 |"
    )
    assert header in page
    assert "| training | 1863 | 2500 | 270 | 1.34 | 0.14 |" in page
    assert "| audit forward passes | 1863 |" in page
    assert (
        "isaerft's default on this machine: 2 thread(s) (min(2, cores - 1) with 16 cores)" in page
    )
    assert "load average 0.2" in page


@pytest.mark.slow
def test_every_workload_measures_on_the_tiny_organism(  # type: ignore[no-untyped-def]
    bench_organism, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.threads import run as threads

    monkeypatch.setattr(threads, "thread_settings", lambda: {"1": 1, "2": 2})
    result = threads.run("tiny", steps=2, repeats=1, quick=True)
    assert result["benchmark"] == "threads" and result["settings"] == {"1": 1, "2": 2}
    assert set(result["workloads"]) == {"train", "audit_forward", "build_lm_step"}
    for entry in result["workloads"].values():
        assert all(v > 0 for v in entry["median_tokens_per_s"].values())
        assert entry["ratio_to_1"]["1"] == 1.0
    render({"threads-tiny": result}, Path("unused"), "img")  # the page accepts a real result
