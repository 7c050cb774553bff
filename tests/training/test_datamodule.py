"""Batches as a pure function of (seed, position): epochs, rank slices, global denominators."""

from __future__ import annotations

import pytest
import torch

from isaerft.training import ISaeRFTDataModule
from isaerft.training.data import tokenize
from isaerft.training.datamodule import BatchPlan, SequenceBatcher, StepLoader
from isaerft.training.recipe import DataConfig


@pytest.fixture(scope="module")
def data(tiny_setup):  # type: ignore[no-untyped-def]
    rows = tiny_setup.sft_rows(20)
    return tokenize(
        rows,
        DataConfig(path="x.jsonl"),
        objective="sft",
        tokenizer=tiny_setup.tokenizer(),
        n_ctx=32,
    )


def test_plan_is_deterministic_and_each_epoch_is_a_permutation() -> None:
    plan, again = BatchPlan(10, 3, seed=1), BatchPlan(10, 3, seed=1)
    assert plan.batches_per_epoch == 3
    epoch0 = [plan.rows(p) for p in range(3)]
    assert [again.rows(p) for p in (2, 0, 1)] == [epoch0[2], epoch0[0], epoch0[1]]
    assert len({r for b in epoch0 for r in b}) == 9  # no repeats inside an epoch
    assert [plan.rows(p) for p in range(3, 6)] != epoch0  # a new order next epoch
    assert BatchPlan(10, 3, seed=2).rows(0) != epoch0[0]


def test_batch_larger_than_dataset_fails() -> None:
    with pytest.raises(ValueError, match="has 4 rows but batch_size is 8"):
        BatchPlan(4, 8, seed=0)


def test_rank_slices_cover_the_global_batch_with_a_global_denominator(data) -> None:  # type: ignore[no-untyped-def]
    batcher = SequenceBatcher(data, BatchPlan(len(data), 4, seed=0), pad_id=0)
    whole = batcher.batch(3, rank=0, world=1)
    halves = [batcher.batch(3, rank=r, world=2) for r in (0, 1)]
    assert sum(int(h["input_ids"].shape[0]) for h in halves) == 4
    targets = int(whole["loss_mask"].sum())
    assert float(whole["denominator"]) == targets
    assert all(float(h["denominator"]) == targets / 2 for h in halves)
    got = sorted(int(h["loss_mask"].sum()) for h in halves)
    assert sum(got) == targets


def test_collate_right_pads_with_masks(data) -> None:  # type: ignore[no-untyped-def]
    batch = SequenceBatcher(data, BatchPlan(len(data), 4, seed=0), pad_id=0).batch(0, 0, 1)
    lengths = batch["attention_mask"].sum(-1)
    for row, n in enumerate(lengths.tolist()):
        assert bool((batch["input_ids"][row, n:] == 0).all())
        assert not bool(batch["loss_mask"][row, n:].any())


def test_step_loader_starts_mid_run_and_reports_full_length(data) -> None:  # type: ignore[no-untyped-def]
    batcher = SequenceBatcher(data, BatchPlan(len(data), 4, seed=0), pad_id=0)
    full = list(StepLoader(batcher, None, 0, 7, 0, 1, "f"))
    tail = StepLoader(batcher, None, 4, 7, 0, 1, "f")
    assert len(tail) == 7
    for a, b in zip(full[4:], list(tail), strict=True):
        assert torch.equal(a["main"]["input_ids"], b["main"]["input_ids"])
    with pytest.raises(ValueError, match="different data"):
        tail.load_state_dict({"data_fingerprint": "sha256:other"})


def test_datamodule_without_trainer(data) -> None:  # type: ignore[no-untyped-def]
    dm = ISaeRFTDataModule(data, batch_size=4, seed=0, total_batches=3, pad_id=0)
    assert dm.batches_per_epoch == 5
    assert len(list(dm.train_dataloader())) == 3
