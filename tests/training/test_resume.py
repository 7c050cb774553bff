"""Exact resume: a run SIGKILLed mid-way and resumed ends with the uninterrupted run's weights."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from isaerft._io import read_safetensors
from isaerft.training import TrainRecipe, train

HELPER = Path(__file__).with_name("killable_train.py")


def csv_steps(path: Path) -> list[int]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [int(float(row["step"])) for row in csv.DictReader(fh)]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(run_dir / "intervention" / "isaerft_weights.safetensors")


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_intervention(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tiny_setup.recipe_dict(
        optim={"lr": 0.05, "scheduler": "cosine", "warmup_steps": 2},
        trainer={"max_steps": 12, "checkpoint_every_n_steps": 4, "top_latents_every_n_steps": 3},
    )
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    recipe = TrainRecipe.from_yaml(recipe_path)

    reference = train(recipe, run_dir=tmp_path / "reference")

    killed = tmp_path / "killed"
    marker = tmp_path / "stalled"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(HELPER), str(recipe_path), str(killed), "6", str(marker)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early:\n{proc.stdout.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("training never reached step 6")
            time.sleep(0.2)
        proc.kill()  # SIGKILL: no cleanup, no final checkpoint
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert not (killed / "intervention").exists() and not (killed / "summary.json").exists()
    state = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    # Only the trainable tensors are checkpointed, never the frozen model or SAE.
    assert list(state["state_dict"]) == ["isaerft.sites.0.component.scale_delta"]

    resumed = train(recipe, run_dir=killed)
    assert resumed.summary["resumed_from_step"] == 4 and resumed.summary["steps"] == 12
    ref, got = weights(tmp_path / "reference"), weights(killed)
    assert ref.keys() == got.keys()
    for key in ref:
        assert float((ref[key] - got[key]).abs().max()) <= 1e-6
    assert reference.summary["steps"] == 12
    # The resumed attempt ran only the steps after the checkpoint.
    assert csv_steps(killed / "logs" / "attempt-1" / "metrics.csv") == list(range(4, 12))
    # The merged metrics cover every step once.
    assert csv_steps(killed / "metrics.csv") == list(range(12))


class _CtrlC(pl.Callback):
    """Press Ctrl-C after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_then_rerun_says_it_resumes(tiny_setup, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    data = tiny_setup.recipe_dict(trainer={"max_steps": 6, "checkpoint_every_n_steps": 2})
    recipe = TrainRecipe.from_dict(data)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, run_dir=tmp_path / "run", callbacks=[_CtrlC(4)])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    capsys.readouterr()
    result = train(recipe, run_dir=tmp_path / "run")
    assert "resuming the interrupted run" in capsys.readouterr().out
    assert result.summary["steps"] == 6 and result.summary["resumed_from_step"] in (2, 4)
