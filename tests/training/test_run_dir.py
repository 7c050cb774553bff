"""train() and load_run(): the run directory, reloading, reuse of loaded objects, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import pytorch_lightning as pl
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
    # (optim may change on a resume; the L1 penalty changes what is trained)
    changed = tiny_setup.recipe_dict(
        intervention={"component": "scale", "l1_coefficient": 0.5},
        trainer={"max_steps": 4, "checkpoint_every_n_steps": 2},
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


# --- the run folder: user files, concurrent trainings, leftovers of other runs ---------------


def test_a_folder_with_user_files_is_refused_before_loading(  # type: ignore[no-untyped-def]
    tiny_setup, tmp_path: Path, monkeypatch
) -> None:
    from isaerft.runs import RunFolderError

    # A model spec that cannot load: the refusal must come first, before anything heavy.
    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(model=str(tmp_path / "no-model")))
    notes = tmp_path / "p" / "logs" / "n.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("notes")
    with pytest.raises(RunFolderError, match="not an isaerft run folder"):
        train(recipe, run_dir=tmp_path / "p")
    assert notes.read_text() == "notes"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["logs"]
    # --output-dir . in a folder holding the user's work
    monkeypatch.chdir(notes.parent)
    with pytest.raises(RunFolderError, match="not an isaerft run folder"):
        train(recipe, run_dir=".")
    assert [p.name for p in notes.parent.iterdir()] == ["n.txt"]


class Killed(RuntimeError):
    """Stands in for a kill in the middle of training."""


class KillAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise Killed


def test_retraining_a_finished_run_never_keeps_its_old_intervention(  # type: ignore[no-untyped-def]
    tiny_setup, tmp_path: Path
) -> None:
    from isaerft.runs import RunFolderError

    run = tmp_path / "r"
    train(TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 2})), run_dir=run)
    again = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(optim={"lr": 0.5}, trainer={"max_steps": 4})
    )
    with pytest.warns(UserWarning, match="replaced its intervention"), pytest.raises(Killed):
        train(again, run_dir=run, callbacks=[KillAt(2)])
    assert not (run / "intervention").exists() and not (run / "summary.json").exists()
    assert read_run_info(run).recipe.optim.lr == 0.5 and read_run_info(run).summary is None
    with pytest.raises(RunFolderError, match="unfinished run"):
        load_run(run)


def test_a_second_training_into_a_busy_folder_is_refused(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft.runs import RunFolderError, locked_run_dir

    recipe = TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 1}))
    with locked_run_dir(tmp_path / "r"):  # what a training in another process holds
        with pytest.raises(RunFolderError, match="another isaerft training is writing"):
            train(recipe, run_dir=tmp_path / "r")
        assert [p.name for p in (tmp_path / "r").iterdir()] == [".isaerft-run"]
    assert train(recipe, run_dir=tmp_path / "r").summary["steps"] == 1


def test_an_intervention_of_another_run_is_refused(finished, tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from isaerft.export import load_isaerft_model
    from isaerft.runs import RunFolderError

    other = train(
        TrainRecipe.from_dict(tiny_setup.recipe_dict(trainer={"max_steps": 2, "seed": 3})),
        run_dir=tmp_path / "other",
    )
    run = tmp_path / "mixed"
    shutil.copytree(finished.run_dir, run)
    load_run(run)  # a copy of a whole run is still that run
    shutil.rmtree(run / "intervention")
    shutil.copytree(other.intervention_dir, run / "intervention")
    for load in (load_run, load_isaerft_model):
        with pytest.raises(RunFolderError, match="not the intervention this run saved"):
            load(run)


def test_nan_weights_of_a_run_are_refused(finished, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from isaerft._io import sha256_file, write_json

    run = tmp_path / "nan"
    shutil.copytree(finished.run_dir, run)
    model, _ = load_run(run)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.fill_(float("nan"))
    model.save_pretrained(run / "intervention")
    summary = read_json(run / "summary.json")  # bound to the new weights: only NaN is wrong
    summary["intervention_sha256"] = sha256_file(run / "intervention/isaerft_weights.safetensors")
    write_json(run / "summary.json", summary)
    with pytest.raises(ValueError, match=r"isaerft_weights\.safetensors holds NaN"):
        load_run(run)


# --- organism runs: reloaded on the very organism build they were trained on -----------------


def organism_recipe(**trainer: object) -> TrainRecipe:
    return TrainRecipe.from_dict(
        {
            "model": "organism:tiny",
            "sae": "organism:tiny",
            "data": {"organism_dataset": {"kind": "clean", "n": 32}, "batch_size": 8},
            "intervention": {"component": "bias"},
            "trainer": {
                "max_steps": 2,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                **trainer,
            },
        }
    )


@pytest.fixture
def organism_cache(tiny_organism, tmp_path: Path, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """A private organism cache holding the tiny organism's current build."""
    import shutil

    from isaerft.organism import specs as organism_specs

    cache = tmp_path / "cache" / "organisms"
    shutil.copytree(tiny_organism.path, cache / tiny_organism.meta["key"])
    monkeypatch.setenv("ISAERFT_CACHE", str(cache.parent))
    monkeypatch.setattr(organism_specs, "_ORGANISMS", {})
    return cache


def rebuild_organism(cache: Path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """What a new isaerft does: organism:tiny now names another build (another cache key),
    whose SAE differs. Returns the new key."""
    import dataclasses
    import shutil

    from safetensors.torch import load_file, save_file

    from isaerft import specs
    from isaerft._io import write_json
    from isaerft.organism import ORGANISM_PRESETS
    from isaerft.organism import specs as organism_specs

    (old,) = [p for p in cache.iterdir() if p.name.startswith("tiny-")]
    preset = ORGANISM_PRESETS["tiny"]
    monkeypatch.setitem(
        ORGANISM_PRESETS, "tiny", dataclasses.replace(preset, version=preset.version + 1)
    )
    new_key = f"tiny-{ORGANISM_PRESETS['tiny'].hash()}"
    shutil.copytree(old, cache / new_key)
    write_json(
        cache / new_key / "organism.json", {**read_json(old / "organism.json"), "key": new_key}
    )
    sae_file = cache / new_key / "sae" / "sae_weights.safetensors"
    save_file({k: v * 1.5 for k, v in load_file(sae_file).items()}, sae_file)
    monkeypatch.setattr(organism_specs, "_ORGANISMS", {})
    assert specs.resolve_sae_spec("organism:tiny") == str(cache / new_key / "sae")
    return new_key


@pytest.mark.slow
def test_an_organism_run_reloads_on_its_own_build_or_refuses(  # type: ignore[no-untyped-def]
    organism_cache: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import re
    import shutil

    from isaerft._io import write_json
    from isaerft.cli import main
    from isaerft.organism import specs as organism_specs
    from isaerft.specs import OrganismBuildError

    (old_key,) = [p.name for p in organism_cache.iterdir()]
    run = train(organism_recipe(), run_dir=tmp_path / "run").run_dir
    record = read_json(run / "run.json")
    assert record["organisms"] == {"tiny": old_key}
    trained = load_run(run)[0].trainable_state_dict()

    new_key = rebuild_organism(organism_cache, monkeypatch)
    for recorded in (record, {k: v for k, v in record.items() if k != "organisms"}):
        # (a run recorded before the builds were: found from its recorded organism folders)
        write_json(run / "run.json", recorded)
        model, info = load_run(run)
        assert info.recipe.model == info.recipe.sae[0] == f"organism:{old_key.replace('-', '@')}"
        assert info.organisms == {"tiny": old_key}
        for key, value in model.trainable_state_dict().items():
            assert torch.equal(value, trained[key])
    # With no record of the build, the rebuilt SAE is still refused, by its fingerprint.
    write_json(run / "run.json", {**record, "organisms": {}})
    with pytest.raises(ValueError, match=r"fingerprint .* a different SAE"):
        load_run(run)

    # The build it was trained on is gone: one clear refusal, never the other organism.
    write_json(run / "run.json", record)
    shutil.rmtree(organism_cache / old_key)
    monkeypatch.setattr(organism_specs, "_ORGANISMS", {})
    refusal = (
        rf"cannot load run {re.escape(str(run))}: organism build {old_key} .* not in the "
        rf"organism cache .* builds organism:tiny as {new_key}: train the run again"
    )
    with pytest.raises(OrganismBuildError, match=refusal):
        load_run(run)
    argv = ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "v.st")]
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"organism build {old_key}" in lines[0], lines


@pytest.mark.slow
def test_an_organism_run_resumes_only_on_its_own_build(  # type: ignore[no-untyped-def]
    organism_cache: Path, tmp_path: Path, monkeypatch
) -> None:
    from isaerft.specs import OrganismBuildError

    (old_key,) = [p.name for p in organism_cache.iterdir()]
    recipe = organism_recipe(max_steps=4, checkpoint_every_n_steps=2)
    with pytest.raises(Killed):
        train(recipe, run_dir=tmp_path / "run", callbacks=[KillAt(3)])
    rebuild_organism(organism_cache, monkeypatch)
    with pytest.raises(OrganismBuildError, match=rf"trained on organism build {old_key}, but"):
        train(recipe, run_dir=tmp_path / "run")
    # Pinned to the build it started on, it resumes.
    pinned = f"organism:{old_key.replace('-', '@')}"
    again = dataclasses.replace(recipe, model=pinned, sae=[pinned])
    result = train(again, run_dir=tmp_path / "run")
    assert result.summary["resumed_from_step"] == 2 and result.summary["steps"] == 4
    assert load_run(result.run_dir)[1].organisms == {"tiny": old_key}
