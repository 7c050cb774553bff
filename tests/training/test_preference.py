"""The reference-free bidirectional preference objective (RePS/SimPO style), as a loss and as
the recipe objective ``kind: reps``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.training import TrainRecipe, train
from isaerft.training.data import tokenize
from isaerft.training.datamodule import BatchPlan, SequenceBatcher, collate
from isaerft.training.module import ISaeRFTLightningModule
from isaerft.training.objectives import sequence_logprobs
from isaerft.training.preference import reference_free_preference_loss
from isaerft.training.recipe import DataConfig, ObjectiveConfig, OptimConfig

LENGTHS = torch.tensor([2.0, 4.0, 2.0, 4.0])  # [chosen; rejected] of two pairs


def test_one_directional_is_simpo() -> None:
    logps = torch.tensor([-2.0, -4.0, -6.0, -4.0])
    loss, acc = reference_free_preference_loss(logps, LENGTHS, 2.0, beta=2.0, gamma=0.5)
    avg = logps / LENGTHS
    margins = 2.0 * (avg[:2] - avg[2:]) - 0.5
    assert loss.item() == pytest.approx(-F.logsigmoid(margins).sum().item() / 2.0)
    assert acc.item() == pytest.approx(0.5)  # pair 1 ranks right (margin 3.5), pair 2 does not


def test_suppression_direction_prefers_the_rejected_answer() -> None:
    steered = torch.tensor([-1.0, -1.0, -8.0, -8.0])  # chosen more likely with the edit
    good = torch.tensor([-8.0, -8.0, -1.0, -1.0])  # rejected more likely with the edit negated
    bad = steered.clone()  # the negated edit still prefers the chosen answer
    low, acc_low = reference_free_preference_loss(steered, LENGTHS, 2.0, suppressed_logps=good)
    high, acc_high = reference_free_preference_loss(steered, LENGTHS, 2.0, suppressed_logps=bad)
    assert low < high and acc_low == 1.0 and acc_high == 0.5


def test_gradient_pushes_chosen_up_and_rejected_down() -> None:
    logps = torch.zeros(4, requires_grad=True)
    suppressed = torch.zeros(4, requires_grad=True)
    loss, _ = reference_free_preference_loss(logps, LENGTHS, 2.0, suppressed_logps=suppressed)
    loss.backward()
    assert logps.grad is not None and suppressed.grad is not None
    assert (logps.grad[:2] < 0).all() and (logps.grad[2:] > 0).all()
    assert (suppressed.grad[:2] > 0).all() and (suppressed.grad[2:] < 0).all()


@pytest.mark.parametrize(
    ("logps", "lengths", "match"),
    [
        (torch.zeros(3), torch.ones(3), "even length"),
        (torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 1.0]), "at least one target token"),
    ],
)
def test_bad_input_is_named(logps: torch.Tensor, lengths: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reference_free_preference_loss(logps, lengths, 1.0)


# --- objective.kind: reps, end to end on the tiny model ---------------------------------------


def pair_margins(model: ISaeRFTModel, tiny_setup: Any) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Per pair of the training rows, length-normalised log p(chosen) - log p(rejected)."""
    rows = tiny_setup.preference_rows(32)
    data = tokenize(
        rows, DataConfig(path="x"), objective="reps", tokenizer=tiny_setup.tokenizer(), n_ctx=32
    )
    streams = [(data.streams[side], list(range(len(data)))) for side in ("chosen", "rejected")]
    width = max(len(ids) for stream, _ in streams for ids in stream.ids)
    batch = collate(streams, width, 0)
    ids, mask = batch["input_ids"], batch["loss_mask"]
    with torch.no_grad():
        logits = model(ids, attention_mask=batch["attention_mask"], return_type="logits")
    avg = sequence_logprobs(logits, ids, mask) / mask[:, 1:].sum(-1)
    return avg[: len(data)] - avg[len(data) :]


def test_reps_recipe_trains_the_edit_both_ways(tiny_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = TrainRecipe.from_dict(
        tiny_setup.recipe_dict(
            data={"path": str(tiny_setup.dpo_path), "batch_size": 8},
            objective={"kind": "reps", "reps_beta": 2.0, "reps_gamma": 0.5},
            intervention={"component": "scale_bias", "l1_coefficient": 0.0},
            optim={"lr": 0.1},
            trainer={"max_steps": 8},
        )
    )
    result = train(recipe, run_dir=tmp_path / "run")
    with open(result.run_dir / "metrics.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(r["train/objective"]) for r in rows if r.get("train/objective")]
    # At identity the edit and its negation are both the base model: the two directions'
    # margins are d - gamma and -d - gamma, whose loss is smallest at d = 0.
    assert losses[0] >= 2 * math.log1p(math.exp(0.5)) - 1e-5
    assert losses[-1] < 0.7 * losses[0]
    assert "train/preference_accuracy" in rows[0]
    model = result.model
    with model.disabled():
        base = pair_margins(model, tiny_setup)
    steered = pair_margins(model, tiny_setup)
    with model.edit_factor(-1.0):
        suppressed = pair_margins(model, tiny_setup)
    # The edit makes every chosen answer more likely relative to its rejected one; the same edit
    # subtracted makes every one less likely than the base model does, and the rejected win.
    assert bool((steered > base).all()) and bool((suppressed < base).all())
    assert float(suppressed.mean()) < 0 < float(steered.mean())


@pytest.mark.parametrize("bidirectional", [True, False])
def test_module_loss_is_the_preference_loss_of_the_edit(tiny_setup, bidirectional: bool) -> None:  # type: ignore[no-untyped-def]
    model, sae = tiny_setup.load()
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale_bias"))
    with torch.no_grad():
        for p in wrapped.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.3)
    data = tokenize(
        tiny_setup.preference_rows(8), DataConfig(path="x"), objective="reps",
        tokenizer=tiny_setup.tokenizer(), n_ctx=32,
    )  # fmt: skip
    batch = SequenceBatcher(data, BatchPlan(len(data), 4, seed=0), pad_id=0).batch(0, 0, 1)
    objective = ObjectiveConfig(
        kind="reps", reps_beta=1.5, reps_gamma=0.25, reps_bidirectional=bidirectional
    )
    module = ISaeRFTLightningModule(wrapped, objective, OptimConfig(), 1)
    parts = module.compute_losses({"main": batch})
    ids, mask = batch["input_ids"], batch["loss_mask"]

    def logps() -> torch.Tensor:
        return sequence_logprobs(wrapped(ids, attention_mask=batch["attention_mask"]), ids, mask)

    with wrapped.edit_factor(-1.0):
        negated = logps() if bidirectional else None
    expected, accuracy = reference_free_preference_loss(
        logps(), mask[:, 1:].sum(-1), 4.0, suppressed_logps=negated, beta=1.5, gamma=0.25
    )
    assert float(parts["objective"].detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["preference_accuracy"]) == pytest.approx(float(accuracy))


@pytest.mark.parametrize(
    ("objective", "data", "message"),
    [
        ({"reps_beta": 0}, {}, r"recipe objective.reps_beta=0 is invalid"),
        ({"reps_gamma": -0.5}, {}, r"recipe objective.reps_gamma=-0.5 is invalid"),
        ({"reps_gamma": float("nan")}, {}, r"recipe objective.reps_gamma=nan is invalid"),
        (
            {"reps_bidirectional": "yes"},
            {},
            r"recipe objective.reps_bidirectional='yes' is invalid",
        ),
        ({"reps_margin": 1.0}, {}, r"reps_margin.*reps_gamma"),
        ({}, {"packing": True}, r"packing=true cannot be used with objective.kind=reps"),
        ({}, {"format": "text"}, r"objective.kind=reps needs preference rows"),
    ],
)
def test_reps_settings_are_validated_by_name(objective, data, message) -> None:  # type: ignore[no-untyped-def]
    recipe = {
        "model": "m",
        "sae": "s",
        "data": {"path": "d.jsonl", **data},
        "objective": {"kind": "reps", **objective},
    }
    with pytest.raises(ValueError, match=message):
        TrainRecipe.from_dict(recipe)


def test_reps_reads_preference_rows_only(tiny_setup) -> None:  # type: ignore[no-untyped-def]
    tok = tiny_setup.tokenizer()
    data = tokenize(
        tiny_setup.preference_rows(4),
        DataConfig(path="x"),
        objective="reps",
        tokenizer=tok,
        n_ctx=32,
    )
    assert data.is_preference
    with pytest.raises(ValueError, match=r"objective\.kind=reps needs preference rows"):
        config = DataConfig(path="x", format="prompt_completion")
        tokenize(tiny_setup.sft_rows(4), config, objective="reps", tokenizer=tok, n_ctx=32)
