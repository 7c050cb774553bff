"""Batches as a pure function of (seed, position): exact resume and rank-independent results.

Global batch ``p`` draws its rows from a permutation seeded by ``(seed, data_epoch)`` with
``data_epoch = p // batches_per_epoch``. A resumed run restarts at ``p = global_step *
accumulate_grad_batches`` and sees the very batches the interrupted run would have seen;
under DDP each rank takes an equal slice of the same global batch, and losses are normalised
by the *global* number of targets, so N ranks reproduce one process with the same global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch

from isaerft.rows import right_pad
from isaerft.training.data import TokenizedData, TokenSequences
from isaerft.training.prefix_cache import PrefixCache

Batch = dict[str, Any]


class BatchPlan:
    """Which rows make global batch ``p`` of a dataset, for a given seed."""

    def __init__(self, num_rows: int, batch_size: int, seed: int, name: str = "data") -> None:
        if num_rows < batch_size:
            raise ValueError(
                f"{name} has {num_rows} rows but batch_size is {batch_size}; lower "
                f"data.batch_size to at most {num_rows} or add rows"
            )
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.batches_per_epoch = num_rows // batch_size
        self._perm: tuple[int, torch.Tensor] | None = None

    def rows(self, position: int) -> list[int]:
        """Row indices of global batch ``position``."""
        epoch, index = divmod(position, self.batches_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.num_rows, generator=gen))
        start = index * self.batch_size
        return self._perm[1][start : start + self.batch_size].tolist()


class SequenceBatcher:
    """Collates rows of one or more token streams into a padded batch for one rank."""

    def __init__(
        self,
        data: TokenizedData,
        plan: BatchPlan,
        pad_id: int,
        caches: dict[str, PrefixCache] | None = None,
    ) -> None:
        self.data, self.plan, self.pad_id = data, plan, pad_id
        self.caches = caches or {}

    def batch(self, position: int, rank: int, world: int) -> Batch:
        """Rank ``rank``'s slice of global batch ``position``, collated."""
        rows = self.plan.rows(position)
        per_rank = len(rows) // world
        local = rows[rank * per_rank : (rank + 1) * per_rank]
        names = list(self.data.streams)
        # The denominator counts the whole global batch so that DDP's gradient mean
        # (over ranks) equals the single-process mean over all targets.
        if self.data.is_preference:
            denominator = len(rows) / world
        else:
            denominator = self.data.streams["main"].num_targets(rows) / world
        seqs = [self.data.streams[n] for n in names]
        length = max(len(s.ids[i]) for s in seqs for i in local)
        out = collate([(s, local) for s in seqs], length, self.pad_id)
        if self.caches:
            parts = [self.caches[n].gather(local, length) for n in names]
            out["resid"] = torch.cat([p[0] for p in parts])
            if all(p[1] is not None for p in parts):
                out["latents"] = torch.cat([p[1] for p in parts])  # type: ignore[misc]
        out["denominator"] = torch.tensor(float(denominator))
        out["global_tokens"] = torch.tensor(sum(len(s.ids[i]) for s in seqs for i in rows))
        return out


def collate(parts: list[tuple[TokenSequences, list[int]]], length: int, pad_id: int) -> Batch:
    """Right-pad the chosen rows of each stream to ``length`` and stack them in order."""
    input_ids, attention = right_pad(
        [stream.ids[i] for stream, rows in parts for i in rows], width=length, pad_id=pad_id
    )
    loss_mask, _ = right_pad(
        [stream.loss_mask[i].long() for stream, rows in parts for i in rows], width=length
    )
    return {
        "input_ids": input_ids,
        "attention_mask": attention.long(),
        "loss_mask": loss_mask.bool(),
    }


class StepLoader:
    """An iterable of the batches at positions ``start .. total - 1`` for one rank.

    ``len()`` is the full ``total`` so that Lightning's progress counters, restored from a
    checkpoint, line up with the batches this loader still yields. It implements
    ``state_dict``/``load_state_dict`` so Lightning treats it as resumable; the state only
    guards against resuming on different data.
    """

    def __init__(
        self,
        main: SequenceBatcher,
        kl: SequenceBatcher | None,
        start: int,
        total: int,
        rank: int,
        world: int,
        fingerprint: str,
    ) -> None:
        self.main, self.kl = main, kl
        self.start, self.total, self.rank, self.world = start, total, rank, world
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[Batch]:
        for position in range(self.start, self.total):
            batch: Batch = {"main": self.main.batch(position, self.rank, self.world)}
            if self.kl is not None:
                batch["kl"] = self.kl.batch(position, self.rank, self.world)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The data fingerprint, checked on resume."""
        return {"data_fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuse to resume on different data."""
        saved = state.get("data_fingerprint")
        if saved is not None and saved != self.fingerprint:
            raise ValueError(
                "the checkpoint was trained on different data (data fingerprint "
                f"{saved[:19]}... vs {self.fingerprint[:19]}...); resume with the same data, or "
                "start a new run (trainer.resume=never or another output_dir)"
            )


class ISaeRFTDataModule(pl.LightningDataModule):
    """Training batches for :class:`~isaerft.training.ISaeRFTLightningModule`.

    Args:
        train: the tokenized training data.
        batch_size: global rows per micro-batch (split evenly over ranks).
        seed: seeds the per-epoch row order.
        total_batches: micro-batches in the whole run (``max_steps * accumulate``).
        pad_id: token used for right padding.
        kl: optional general data for the KL regulariser, with its own ``kl_batch_size``.
        caches: optional prefix caches per stream (see :class:`~isaerft.training.PrefixCache`).
    """

    def __init__(
        self,
        train: TokenizedData,
        batch_size: int,
        seed: int,
        total_batches: int,
        pad_id: int,
        kl: TokenizedData | None = None,
        kl_batch_size: int | None = None,
        caches: dict[str, PrefixCache] | None = None,
        kl_caches: dict[str, PrefixCache] | None = None,
    ) -> None:
        super().__init__()
        self.train_data, self.kl_data = train, kl
        self.batch_size, self.seed, self.total_batches = batch_size, seed, total_batches
        self.main = SequenceBatcher(
            train, BatchPlan(len(train), batch_size, seed, "data"), pad_id, caches
        )
        self.kl = None
        if kl is not None:
            kl_plan = BatchPlan(len(kl), kl_batch_size or batch_size, seed + 1, "objective.kl_data")
            self.kl = SequenceBatcher(kl, kl_plan, pad_id, kl_caches)
        self.fingerprint = train.fingerprint()

    @property
    def batches_per_epoch(self) -> int:
        """Full global batches in one pass over the training data."""
        return self.main.plan.batches_per_epoch

    def train_dataloader(self) -> StepLoader:
        """Batches from the restored step to the end of the run, for this rank."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        for name, batcher in (("data.batch_size", self.main), ("KL batch size", self.kl)):
            if batcher is not None and batcher.plan.batch_size % world:
                raise ValueError(
                    f"{name}={batcher.plan.batch_size} is the global batch and must divide "
                    f"evenly over {world} processes; make it a multiple of {world}"
                )
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        # The restored global step tells where an interrupted run stopped.
        start = (trainer.global_step if trainer is not None else 0) * accumulate
        return StepLoader(
            self.main, self.kl, start, self.total_batches, rank, world, self.fingerprint
        )
