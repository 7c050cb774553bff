"""The step-time benchmark's code paths on micro shapes (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.step_time.run import SHAPES, Shape, build, build_organism_pair, main, run

MICRO = Shape("micro", 32, 3, 4, 64, 4, 4, 1, 2, 8)


@pytest.mark.parametrize("arch", ["gpt2", "gemma2"])
def test_every_variant_runs_and_reports(arch: str) -> None:
    shape = Shape("micro", 32, 3, 4, 64, 4, 4, 1, 2, 8, d_sae=100, arch=arch)
    result = run(shape, "cpu", repeats=1, warmup=0)
    variants = {
        "floor",
        "floor_again",
        "isaerft",
        "isaerft_dense",
        "saelens_error_term",
        "full_finetune",
    }
    assert set(result["median_s"]) == variants
    assert set(result["saved_for_backward_mib"]) == variants
    assert result["d_sae"] == 100
    assert result["shape"]["hook_name"] == "blocks.1.hook_resid_post"
    assert result["shape"]["hook_depth"] == pytest.approx(2 / 3)
    assert all(v > 0 for v in result["ratios"].values())
    assert "floor_again_over_floor" in result["ratios"]  # the run's own noise gauge
    assert "target" not in result  # targets belong to the gemma-like shape only


def test_gemma_like_keeps_gemma_proportions() -> None:
    shape = SHAPES["gemma-like"]
    assert shape.width / shape.d_model == pytest.approx(16384 / 2304, rel=0.01)
    assert shape.d_vocab / shape.d_model == pytest.approx(256000 / 2304, rel=0.01)
    assert (shape.n_layers, shape.hook_layer) == (26, 12)
    model, sae = build(
        Shape(
            **{
                **shape.__dict__,
                "d_model": 32,
                "d_sae": 64,
                "d_vocab": 128,
                "n_layers": 2,
                "hook_layer": 0,
            }
        ),
        "cpu",
    )
    assert model.cfg.gated_mlp and model.cfg.normalization_type == "RMS"
    assert model.cfg.positional_embedding_type == "rotary"
    assert sae.cfg.d_sae == 64


def test_organism_shape_uses_the_organisms_model(bench_organism: Any) -> None:
    shape, model, sae = build_organism_pair("tiny", "cpu", batch=2)
    assert sae.cfg.metadata.hook_name == bench_organism.hook_name
    assert shape.d_model == model.cfg.d_model and shape.width == sae.cfg.d_sae
    result = run(Shape(**{**shape.__dict__, "seq": 8}), "cpu", 1, 0, pair=(model, sae))
    # A resid_pre hook: the full fine-tune trains its block and everything after it.
    assert result["shape"]["hook_depth"] == pytest.approx(shape.hook_layer / shape.n_layers)
    assert result["median_s"]["full_finetune"] > 0


def test_cli_writes_strict_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.step_time import run as step_time

    monkeypatch.setitem(step_time.SHAPES, "cpu", MICRO)
    out = tmp_path / "step.json"
    main(["--shape", "cpu", "--quick", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "step_time" and result["quick"] is True
    assert result["machine"]["torch_threads"] >= 1
