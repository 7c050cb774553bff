"""DDP: two CPU processes (gloo) train to the same intervention as one with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from isaerft._io import read_safetensors
from isaerft.training import TrainRecipe, train


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tiny_setup.recipe_dict(
        data={"path": str(tiny_setup.sft_path), "batch_size": 8},
        trainer={"max_steps": 6, "accumulate_grad_batches": 2},
    )
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    single = train(TrainRecipe.from_yaml(recipe_path), run_dir=tmp_path / "single")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "isaerft", "train", str(recipe_path)]
    cmd += [
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "--quiet",
        "--output-dir",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text(encoding="utf-8"))
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert summary["tokens"] == single.summary["tokens"]
    assert summary["final"]["train/loss"] == pytest.approx(
        single.summary["final"]["train/loss"], abs=1e-5
    )
    name = "intervention/isaerft_weights.safetensors"
    one, two = (
        read_safetensors(tmp_path / "single" / name),
        read_safetensors(tmp_path / "ddp" / name),
    )
    for key in one:
        assert float((one[key] - two[key]).abs().max()) <= 1e-5
    assert float(one[next(iter(one))].abs().max()) > 1e-3  # it trained
