"""TrainRecipe: validation with field names, unknown keys, overrides, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from isaerft.training import TrainRecipe
from isaerft.training.recipe import apply_overrides

RECIPES = Path(__file__).resolve().parents[2] / "isaerft" / "recipes"


def minimal(**extra: object) -> dict:
    return {"model": "m", "sae": "s", "data": {"path": "d.jsonl"}, **extra}


def test_minimal_recipe_fills_defaults() -> None:
    recipe = TrainRecipe.from_dict(minimal())
    assert recipe.sae == ["s"]
    assert recipe.intervention.component == "scale"
    assert recipe.objective.kind == "sft"
    assert recipe.run_dir == Path("runs/run")


def test_round_trip_through_dict_and_yaml() -> None:
    recipe = TrainRecipe.from_dict(minimal(objective={"kind": "lm"}, trainer={"max_steps": 5}))
    again = TrainRecipe.from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\] in recipe; valid keys: \[.*'data'"),
        ({"trainer": {"max_step": 3}}, r"unknown key\(s\) \['max_step'\] in trainer; valid keys"),
        ({"intervention": {"l1": 1}}, r"in intervention; valid keys: \[.*'l1_coefficient'"),
        ({"objective": {"kind": "ppo"}}, r"objective.kind='ppo' is invalid: use one of"),
        ({"optim": {"lr": -1}}, r"optim.lr=-1 is invalid"),
        ({"trainer": {"logger": "wandb"}}, r"trainer.logger='wandb'"),
        ({"intervention": {"component": "nope"}}, r"ISaeRFTConfig.component='nope' is unknown"),
        ({"data": {"path": "a.jsonl", "batch_size": 0}}, r"data.batch_size=0 is invalid"),
        ({"data": {}}, r"exactly one of data.path"),
        ({"objective": {"kl_coefficient": 0.1}}, r"needs objective.kl_data"),
        ({"data": {"organism_dataset": {"kind": "weird"}}}, r"kind='weird' is invalid"),
    ],
)
def test_bad_recipes_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainRecipe.from_dict({**minimal(), **data})


def test_dpo_with_packing_is_rejected() -> None:
    with pytest.raises(ValueError, match="packing"):
        TrainRecipe.from_dict(
            minimal(data={"path": "d.jsonl", "packing": True}, objective={"kind": "dpo"})
        )


def test_overrides_parse_yaml_values_and_create_sections() -> None:
    out = apply_overrides(minimal(), ["trainer.max_steps=7", "optim.lr=1e-3", "sae=[a, b]"])
    recipe = TrainRecipe.from_dict(out)
    assert recipe.trainer.max_steps == 7
    assert recipe.optim.lr == pytest.approx(1e-3)
    assert recipe.sae == ["a", "b"]
    with pytest.raises(ValueError, match=r"must look like section.key=value"):
        apply_overrides({}, ["oops"])


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        TrainRecipe.from_yaml(tmp_path / "none.yaml")


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path: Path) -> None:
    recipe = TrainRecipe.from_yaml(path)
    assert recipe.model and recipe.sae


def test_expected_recipes_ship() -> None:
    names = {p.name for p in RECIPES.glob("*.yaml")}
    assert {
        "organism-poison.yaml",
        "organism-clean.yaml",
        "gemma-2-2b-gemmascope-sft.yaml",
        "gemma-2-2b-gemmascope-dpo.yaml",
    } <= names


def test_every_recipe_key_is_documented() -> None:
    import dataclasses

    from isaerft.training.recipe import (
        DataConfig,
        ObjectiveConfig,
        OptimConfig,
        OrganismDatasetSpec,
        TrainerConfig,
    )

    doc = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text(encoding="utf-8")
    classes = (
        TrainRecipe,
        DataConfig,
        OrganismDatasetSpec,
        ObjectiveConfig,
        OptimConfig,
        TrainerConfig,
    )
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in dataclasses.fields(cls)
        if f"| `{f.name}` |" not in doc
    ]
    assert not missing


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("intervention.l1_coefficient=.nan", r"ISaeRFTConfig.l1_coefficient=nan is invalid"),
        ("intervention.init_std=.inf", r"ISaeRFTConfig.init_std=inf is invalid"),
        ("trainer.epochs=.inf", r"recipe trainer.epochs=inf is invalid: must be a finite number"),
        ("optim.grad_clip=.nan", r"recipe optim.grad_clip=nan is invalid"),
        ("optim.lr=.nan", r"recipe optim.lr=nan is invalid"),
        ("objective.moved_tolerance=.nan", r"recipe objective.moved_tolerance=nan is invalid"),
        ("objective.dpo_beta=.inf", r"recipe objective.dpo_beta=inf is invalid"),
        ("data.packing=yes please", r"recipe data.packing='yes please' is invalid: must be true"),
        ("trainer.progress_bar=1", r"recipe trainer.progress_bar=1 is invalid"),
        ("trainer.max_steps=2.5", r"recipe trainer.max_steps=2.5 is invalid"),
        ("optim=3", r"optim must be a mapping"),
        ("trainer.max_steps.x=3", r"trainer.max_steps is a value"),
        ("optim.lr=[1", r"override 'optim.lr=\[1' is not valid YAML"),
    ],
)
def test_bad_overrides_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainRecipe.from_dict(apply_overrides(minimal(trainer={"max_steps": 1}), [override]))


def test_float16_components_with_adam_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"float16 cannot train with optim.optimizer=adam.*eps"):
        TrainRecipe.from_dict(minimal(intervention={"dtype": "float16"}))
    recipe = TrainRecipe.from_dict(
        minimal(intervention={"dtype": "float16"}, optim={"optimizer": "sgd"})
    )
    assert recipe.intervention.dtype == "float16"


def test_recipe_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("model: m\nsae: s\nmodel: n\ndata: {path: d.jsonl}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup.yaml: key 'model' is written twice"):
        TrainRecipe.from_yaml(path)
    path.write_bytes(b"model: caf\xe9\n")
    with pytest.raises(ValueError, match=r"dup.yaml is not UTF-8"):
        TrainRecipe.from_yaml(path)
    path.write_text("model: [m\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup.yaml is not valid YAML at line"):
        TrainRecipe.from_yaml(path)
