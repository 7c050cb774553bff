"""The recipes for current SAE suites (Gemma 3 + Gemma Scope 2, Qwen 3 + Qwen-Scope) and the
recipe's ``model_backend``.

These recipes need a GPU and the Hugging Face hub, so they are checked offline as far as the
download: they validate, name SAEs that SAELens' pretrained directory knows for the model they
load, and resolving them (or training them) stops at the download with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from isaerft.training import TrainRecipe
from isaerft.training.recipe import find_recipe

RECIPES = Path(__file__).resolve().parents[2] / "isaerft" / "recipes"
SUITES = {
    # recipe name: (model, release, sae_id)
    "gemma-3-1b-gemmascope-2-sft": (
        "google/gemma-3-1b-pt",
        "gemma-scope-2-1b-pt-res",
        "layer_13_width_16k_l0_medium",
    ),
    "gemma-3-1b-gemmascope-2-dpo": (
        "google/gemma-3-1b-pt",
        "gemma-scope-2-1b-pt-res",
        "layer_13_width_16k_l0_medium",
    ),
    "qwen3-1.7b-qwenscope-sft": (
        "Qwen/Qwen3-1.7B-Base",
        "qwen-scope-3-1.7b-base-w32k-l50",
        "layer14",
    ),
    "qwen3-1.7b-qwenscope-dpo": (
        "Qwen/Qwen3-1.7B-Base",
        "qwen-scope-3-1.7b-base-w32k-l50",
        "layer14",
    ),
}


def minimal(**extra: object) -> dict:
    return {"model": "m", "sae": "s", "data": {"path": "d.jsonl"}, **extra}


@pytest.fixture(params=sorted(SUITES))
def suite(request: pytest.FixtureRequest) -> tuple[str, TrainRecipe]:
    name = str(request.param)
    return name, TrainRecipe.from_yaml(find_recipe(name))


def test_suite_recipes_ship_and_load_on_a_bridge(suite: tuple[str, TrainRecipe]) -> None:
    name, recipe = suite
    assert find_recipe(name).resolve() == RECIPES / f"{name}.yaml"
    model, release, sae_id = SUITES[name]
    assert recipe.name == name
    assert recipe.model == model
    assert recipe.sae == [f"{release}::{sae_id}"]
    assert recipe.model_backend == "bridge"
    assert recipe.trainer.prefix_cache is False
    assert recipe.model_dtype == "bfloat16"


def test_suite_saes_are_in_saelens_directory(suite: tuple[str, TrainRecipe]) -> None:
    """The release and SAE id exist in the installed SAELens' pretrained_saes.yaml, for the
    very model the recipe loads (read offline, from the package)."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    name, recipe = suite
    model, release, sae_id = SUITES[name]
    directory = get_pretrained_saes_directory()
    assert release in directory
    assert sae_id in directory[release].saes_map
    assert directory[release].model == model == recipe.model


def test_qwen_scope_sae_reads_the_residual_stream_it_is_spliced_at() -> None:
    """Qwen-Scope's SAELens config is computed without the hub: layer 14's residual output of
    the 2048-wide Qwen3-1.7B-Base (the bridge's ``blocks.14.hook_out``)."""
    from sae_lens.loading.pretrained_sae_loaders import get_qwen_scope_config_from_hf
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    info = get_pretrained_saes_directory()["qwen-scope-3-1.7b-base-w32k-l50"]
    cfg = get_qwen_scope_config_from_hf(info.repo_id, info.saes_map["layer14"], "cpu")
    assert cfg["hook_name"] == "blocks.14.hook_resid_post"
    assert cfg["model_name"] == "Qwen/Qwen3-1.7B-Base"
    assert (cfg["d_in"], cfg["d_sae"], cfg["activation_fn_kwargs"]["k"]) == (2048, 32768, 50)


def test_suite_recipes_resolve_as_far_as_the_download(
    suite: tuple[str, TrainRecipe], monkeypatch: pytest.MonkeyPatch
) -> None:
    from isaerft.training.resolve import load_recipe_model, load_recipe_saes

    name, recipe = suite
    model, release, sae_id = SUITES[name]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=rf"model '{model}' must be downloaded.*HF_HUB_OFFLINE=1"):
        load_recipe_model(recipe, "cpu")
    with pytest.raises(OSError, match=rf"SAE {release}::{sae_id} must be downloaded.*HF_HUB_OFF"):
        load_recipe_saes(recipe, "cpu")


def test_training_a_suite_recipe_offline_stops_at_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` loads the recipe's model as a bridge (the message is the bridge loader's)."""
    from isaerft.training import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    path = find_recipe("qwen3-1.7b-qwenscope-sft")
    recipe = TrainRecipe.from_yaml(path, ["trainer.accelerator=cpu"])
    with pytest.raises(OSError, match=r"'Qwen/Qwen3-1.7B-Base' must be downloaded.*HF_HUB_OFF"):
        train(recipe, run_dir=tmp_path / "run")


def test_model_backend_is_a_choice() -> None:
    assert TrainRecipe.from_dict(minimal()).model_backend == "hooked"
    assert TrainRecipe.from_dict(minimal(model_backend="bridge")).model_backend == "bridge"
    with pytest.raises(ValueError, match=r"recipe.model_backend='hf' is invalid: use one of"):
        TrainRecipe.from_dict(minimal(model_backend="hf"))


def test_bridge_refuses_prefix_cache_in_one_line() -> None:
    with pytest.raises(
        ValueError,
        match=r"^[^\n]*prefix_cache=true cannot be used with "
        r"model_backend=bridge[^\n]*prefix_cache=false$",
    ):
        TrainRecipe.from_dict(minimal(model_backend="bridge", trainer={"prefix_cache": True}))
    recipe = TrainRecipe.from_dict(minimal(model_backend="hooked", trainer={"prefix_cache": True}))
    assert recipe.trainer.prefix_cache
