"""``benchmarks.docs``: the page is made from the result files alone, and says what they say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.docs.page import load_results, main, render


def step_result(name: str, isaerft: float, floor: float, target: bool) -> dict[str, Any]:
    variants = ("floor", "isaerft", "isaerft_dense", "saelens_error_term", "full_finetune")
    median = dict.fromkeys(variants, 0.010) | {"floor": floor, "isaerft": isaerft}
    result: dict[str, Any] = {
        "benchmark": "step_time",
        "shape": {
            "name": name,
            "d_model": 256,
            "n_layers": 26,
            "d_vocab": 28416,
            "batch": 4,
            "seq": 128,
            "hook_name": "blocks.12.hook_resid_post",
            "hook_depth": 0.5,
        },
        "d_sae": 1820,
        "device": "cpu",
        "repeats": 5,
        "median_s": median,
        "saved_for_backward_mib": dict.fromkeys(variants, 1.5),
        "cuda_peak_above_weights_mib": None,
        "ratios": {"isaerft_over_floor": isaerft / floor},
        "machine": {
            "created": "2024-01-01",
            "platform": "linux",
            "torch_threads": 2,
            "load_average_1m": 7.5,
        },
    }
    if target:
        result["target"] = {"isaerft_over_floor_max": 1.05, "met": isaerft / floor <= 1.05}
    return result


PREFIX = {
    "benchmark": "step_time_prefix_cache",
    "repeats": 1,
    "shapes": [
        {
            "shape": {"n_layers": 6, "d_model": 256, "hook_name": "blocks.4.hook_resid_pre",
                      "hook_depth": 2 / 3, "rows": 512, "batch_size": 16, "epochs": 3.0},
            "median": {"uncached": {"total_s": 30.0, "setup_s": 1.0, "fit_s": 29.0},
                       "cached": {"total_s": 12.5, "setup_s": 2.5, "fit_s": 10.0}},
            "ratios": {"prefix_cache_speedup_total": 2.4, "prefix_cache_speedup_fit": 2.9},
            "target": {"prefix_cache_speedup_total_min": 1.4, "met": True},
        },
        {
            "shape": {"n_layers": 6, "d_model": 512, "hook_name": "blocks.4.hook_resid_pre",
                      "hook_depth": 2 / 3, "rows": 512, "batch_size": 16, "epochs": 3.0},
            "median": {"uncached": {"total_s": 13.0, "setup_s": 1.0, "fit_s": 12.0},
                       "cached": {"total_s": 10.0, "setup_s": 2.5, "fit_s": 7.5}},
            "ratios": {"prefix_cache_speedup_total": 1.3, "prefix_cache_speedup_fit": 1.6},
            "target": {"prefix_cache_speedup_total_min": 1.4, "met": False},
        },
    ],
    "machine": {"created": "2024-01-01", "platform": "linux", "torch_threads": 1},
}  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    for name, data in {
        "step_time-gemma-like-cpu": step_result("gemma-like", 0.0212, 0.0200, True),
        "step_time-cpu-cpu": step_result("cpu", 0.0110, 0.0100, False),
        "step_time-prefix_cache-cpu": PREFIX,
    }.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def test_numbers_and_verdicts_come_from_the_json(results: Path, tmp_path: Path) -> None:
    page = render(load_results(results), tmp_path / "img", "img")
    assert "do not edit" in page
    assert "| isaerft | 21.2 |" in page  # 0.0212 s from the JSON, in ms
    assert "Target ISaeRFT/floor <= 1.05: **not met** (1.060)" in page
    assert (
        "| 256 | 6 | `blocks.4.hook_resid_pre` (0.67) | 30.0 | 12.5 | 2.5 | 2.40 | 2.90 | met |"
        in page
    )
    assert "| 1.30 | 1.60 | **not met** |" in page
    assert "load average 7.5" in page
    assert "No result yet: run `python -m benchmarks.audit_poison`" in page
    assert "python -m benchmarks.step_time --shape gemma-like" in page


def test_cli_writes_the_page(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks.md"
    assert main(["--results", str(results), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Benchmarks")


def test_broken_result_file_is_named(results: Path) -> None:
    (results / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        load_results(results)
