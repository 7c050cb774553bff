"""Latent labels, the top-moved-latents ranking and its periodic log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTModel
from isaerft.training import (
    TrainRecipe,
    format_moved_latents,
    read_latent_labels,
    top_moved_latents,
    train,
)


def test_read_latent_labels_keeps_the_best_scored(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    lines = [
        {"modelId": "m", "layer": "1", "index": "3", "description": "cats", "score": 0.5},
        {"modelId": "m", "layer": "1", "index": 3, "description": "felines", "score": 0.9},
        {"index": 7, "description": "the word banana"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    assert read_latent_labels(path) == {3: "felines", 7: "the word banana"}
    path.write_text('{"index": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels.jsonl:1 is not a label line"):
        read_latent_labels(path)
    with pytest.raises(FileNotFoundError):
        read_latent_labels(tmp_path / "none.jsonl")


def test_top_moved_latents_rank_by_magnitude_over_sites() -> None:
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    model = ISaeRFTModel(tiny_model(), [tiny_sae(hook_name=h) for h in hooks])
    with torch.no_grad():
        model.site(hooks[0]).component.scale_delta[5] = 0.3
        model.site(hooks[1]).component.scale_delta[9] = -0.7
        model.site(hooks[1]).component.scale_delta[2] = 0.1
    top = top_moved_latents(model, k=2, labels={9: "nine"})
    assert [(m.hook_name, m.index) for m in top] == [(hooks[1], 9), (hooks[0], 5)]
    assert top[0].edits == {"scale": pytest.approx(-0.7)} and top[0].label == "nine"
    table = format_moved_latents(top)
    assert "nine" in table and table.count("\n") == 2


def test_periodic_log_is_written_with_labels(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(json.dumps({"index": i, "description": f"latent {i}"}) + "\n" for i in range(128)),
        encoding="utf-8",
    )
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(
            labels=str(labels), trainer={"max_steps": 4, "top_latents_every_n_steps": 2, "top_k": 3}
        )
    )
    result = train(recipe, run_dir=tmp_path / "run")
    records = [
        json.loads(x) for x in (result.run_dir / "top_latents.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [2, 4]
    assert len(records[-1]["latents"]) == 3
    assert records[-1]["latents"][0]["label"] == f"latent {records[-1]['latents'][0]['index']}"
    assert result.top_latents[0].label is not None
