"""train() and load_run(): the run directory, reloading, reuse of loaded objects, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from isaerft._io import read_json
from isaerft.training import PrefixCacheStore, TrainRecipe, load_run, read_run_info, train


@pytest.fixture(scope="module")
def finished(tiny_setup, tmp_path_factory):  # type: ignore[no-untyped-def]
    run_dir = tmp_path_factory.mktemp("finished")
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(trainer={"max_steps": 4, "top_latents_every_n_steps": 2})
    )
    return train(recipe, run_dir=run_dir)


def test_run_directory_contents(finished) -> None:  # type: ignore[no-untyped-def]
    run_dir = finished.run_dir
    for name in ("config.yaml", "run.json", "metrics.csv", "summary.json", "top_latents.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "intervention" / "isaerft_config.json").is_file()
    summary = read_json(run_dir / "summary.json")
    for key in ("steps", "final", "wall_time_s", "tokens_per_s", "moved_latents", "top_latents"):
        assert key in summary
    assert summary["steps"] == 4 and summary["tokens_per_s"] > 0
    resolved = TrainRecipe.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert resolved.trainer.max_steps == 4


def test_load_run_restores_the_trained_model(finished, tiny_setup) -> None:  # type: ignore[no-untyped-def]
    model, info = load_run(finished.run_dir)
    assert info.seed == 0 and info.data_path == str(tiny_setup.sft_path)
    assert info.summary is not None and info.summary["steps"] == 4
    for key, value in finished.model.trainable_state_dict().items():
        torch.testing.assert_close(model.trainable_state_dict()[key], value)
    # Reusing already-loaded objects (as an audit does) works too.
    base, sae = tiny_setup.load()
    again, _ = load_run(finished.run_dir, model=base, saes=[sae])
    assert again.model is base


def test_read_run_info_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an isaerft run directory"):
        read_run_info(tmp_path)


def test_train_reuses_loaded_model_and_prefix_cache(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, sae = tiny_setup.load()
    store = PrefixCacheStore()
    plain = TrainRecipe.from_dict(tiny_setup.recipe_dict())
    cached = TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"prefix_cache": True}))
    a = train(plain, model=base, saes=[sae], run_dir=tmp_path / "a")
    b = train(cached, model=base, saes=[sae], prefix_cache=store, run_dir=tmp_path / "b")
    c = train(cached, model=base, saes=[sae], prefix_cache=store, run_dir=tmp_path / "c")
    assert len(store._memory) == 1  # built once, reused by the second cached run
    wa, wb, wc = (r.model.trainable_state_dict() for r in (a, b, c))
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], atol=1e-5, rtol=1e-4)
        assert torch.equal(wb[key], wc[key])
    assert b.summary["final"]["train/loss"] == pytest.approx(
        a.summary["final"]["train/loss"], abs=1e-5
    )


def test_resume_never_starts_over(finished, tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(trainer={"max_steps": 2, "checkpoint_every_n_steps": 1})
    )
    train(recipe, run_dir=tmp_path / "r")
    again = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(
            trainer={"max_steps": 2, "checkpoint_every_n_steps": 1, "resume": "never"}
        )
    )
    result = train(again, run_dir=tmp_path / "r")
    assert result.summary["resumed_from_step"] is None and result.summary["steps"] == 2


def test_resume_with_another_recipe_fails(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = tiny_setup.recipe_dict(trainer={"max_steps": 4, "checkpoint_every_n_steps": 2})
    train(TrainRecipe.from_dict(first), run_dir=tmp_path / "r")
    (tmp_path / "r" / "summary.json").unlink()
    changed = tiny_setup.recipe_dict(
        optim={"lr": 0.5}, trainer={"max_steps": 4, "checkpoint_every_n_steps": 2}
    )
    with pytest.raises(ValueError, match="different recipe or data"):
        train(TrainRecipe.from_dict(changed), run_dir=tmp_path / "r")


def test_missing_data_file_is_reported(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(data={"path": str(tmp_path / "nope.jsonl")})
    )
    with pytest.raises(FileNotFoundError, match=r"nope.jsonl not found"):
        train(recipe, run_dir=tmp_path / "run")


def test_missing_model_folder_is_reported(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(model=str(tmp_path)))
    with pytest.raises(ValueError, match=r"holds no isaerft_model.json"):
        train(recipe, run_dir=tmp_path / "run")


def test_tensorboard_logger_or_a_clear_error(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(trainer={"max_steps": 1, "logger": "tensorboard"})
    )
    if (
        importlib.util.find_spec("tensorboard") is None
        and importlib.util.find_spec("tensorboardX") is None
    ):
        with pytest.raises(ValueError, match="pip install tensorboard"):
            train(recipe, run_dir=tmp_path / "run")
    else:
        train(recipe, run_dir=tmp_path / "run")
        assert (tmp_path / "run" / "logs" / "tensorboard").is_dir()
        assert (tmp_path / "run" / "metrics.csv").is_file()
