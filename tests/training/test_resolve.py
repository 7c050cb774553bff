"""resolve: the device a recipe trains on, and a caller's model placed there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from isaerft.training import PrefixCacheStore, TrainRecipe, train
from isaerft.training.resolve import accelerator_for, place


@pytest.mark.parametrize(
    ("device", "accelerator"), [("cpu", "cpu"), ("cuda", "gpu"), ("cuda:0", "gpu"), ("mps", "mps")]
)
def test_each_device_names_its_accelerator(device: str, accelerator: str) -> None:
    assert accelerator_for(device) == accelerator


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:1", "CUDA_VISIBLE_DEVICES=1"), ("tpu", "not one of cpu, cuda, mps"), ("cpu:1", "not")],
)
def test_a_device_no_run_trains_on_is_refused(device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        accelerator_for(device)


def test_place_puts_the_config_in_step_with_the_weights(tiny_setup: Any) -> None:
    model, sae = tiny_setup.load()
    model.cfg.device = "meta"  # what Lightning's teardown leaves: weights moved, config not
    place(model, [sae], "cpu")
    assert torch.device(model.cfg.device) == torch.device("cpu")
    assert {p.device.type for p in [*model.parameters(), *sae.parameters()]} == {"cpu"}


def test_a_reused_model_with_a_stale_device_trains_again(tiny_setup: Any, tmp_path: Path) -> None:
    """The audit trains every run on one loaded model; after a fit Lightning hands the module
    back on the CPU while TransformerLens' ``cfg.device`` still names the GPU, and the next
    run's prefix cache sent its tokens there. A stale ``cfg.device`` stands in for that."""
    model, sae = tiny_setup.load()
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"prefix_cache": True}))
    store = PrefixCacheStore()
    train(recipe, model=model, saes=[sae], prefix_cache=store, run_dir=tmp_path / "a")
    model.cfg.device = "meta"
    result = train(recipe, model=model, saes=[sae], prefix_cache=store, run_dir=tmp_path / "b")
    assert int(result.summary["steps"]) == 6
    assert torch.device(model.cfg.device) == torch.device("cpu")
