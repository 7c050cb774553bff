"""One training loop for every method: same rows, steps, batch size and schedule; only the
learning rate (tuned per method on the dev split) differs.

Objectives: ``sft`` (completion-only cross-entropy on the target answer), ``dpo`` (chosen =
target, rejected = base answer, reference = the frozen base model) and ``reps`` (the
reference-free bidirectional objective of :mod:`isaerft.training.preference`, the recipe
objective ``kind: reps`` with its default ``reps_beta`` and ``reps_gamma``; one-directional for
methods without a steering factor).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from isaerft.training.objectives import dpo_loss, next_token_loss, sequence_logprobs
from isaerft.training.preference import reference_free_preference_loss
from isaerft.training.recipe import ObjectiveConfig

from .methods import Method
from .tasks import Row

DPO_BETA = 0.1
REPS = ObjectiveConfig(kind="reps")
"""``reps`` with the recipe objective's defaults (``reps_beta``, ``reps_gamma``)."""


@dataclass
class Batch:
    """Right-padded ``[chosen; rejected]`` rows with answer-token masks (``loss_mask[t]``:
    token ``t`` is a target), the base model's log-probs of them, and answer lengths."""

    tokens: torch.Tensor
    loss_mask: torch.Tensor
    lengths: torch.Tensor
    reference: torch.Tensor


def pad_rows(
    seqs: list[list[int]], masks: list[list[bool]], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists and their masks to one tensor each."""
    width = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([m + [False] * (width - len(m)) for m in masks])
    return tokens, mask


def make_batch(rows: list[Row], pad: int, base: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """The batch of ``rows`` (chosen then rejected), with reference log-probs from ``base``."""
    seqs = [p + c for p, c, _ in rows] + [p + r for p, _, r in rows]
    masks = [[False] * len(p) + [True] * len(c) for p, c, _ in rows]
    masks += [[False] * len(p) + [True] * len(r) for p, _, r in rows]
    tokens, mask = pad_rows(seqs, masks, pad)
    with torch.no_grad():
        reference = sequence_logprobs(base(tokens), tokens, mask)
    return Batch(tokens, mask, mask.sum(1), reference)


def objective_loss(method: Method, batch: Batch, objective: str) -> torch.Tensor:
    """The ``objective`` loss of ``method`` on ``batch`` (mean over rows / pairs / tokens);
    ``reps`` is bidirectional (the edit at factor ``-1`` must suppress) where the method has a
    factor."""
    suppressed = None
    if objective == "reps" and method.supports_factor:
        with method.factor(-1.0):
            suppressed = sequence_logprobs(
                method.logits(batch.tokens), batch.tokens, batch.loss_mask
            )
    return logits_loss(method.logits, batch, objective, suppressed)


def logits_loss(
    logits: Callable[[torch.Tensor], torch.Tensor],
    batch: Batch,
    objective: str,
    suppressed: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``objective`` loss of a model given by its ``logits`` (``reps`` one-directional
    unless the ``suppressed`` log-probs of the edit at factor ``-1`` are given)."""
    n = batch.tokens.shape[0] // 2
    if objective == "sft":
        chosen, mask = batch.tokens[:n], batch.loss_mask[:n]
        return next_token_loss(logits(chosen), chosen, mask, mask[:, 1:].sum())
    logps = sequence_logprobs(logits(batch.tokens), batch.tokens, batch.loss_mask)
    if objective == "dpo":
        return dpo_loss(logps, batch.reference, DPO_BETA, torch.tensor(float(n)))[0]
    if objective == "reps":
        return reference_free_preference_loss(
            logps, batch.lengths, float(n), suppressed_logps=suppressed,
            beta=REPS.reps_beta, gamma=REPS.reps_gamma,
        )[0]  # fmt: skip
    raise ValueError(f"unknown objective {objective!r}; use sft, dpo or reps")


@dataclass
class TrainStats:
    """What one training run measured."""

    median_step_s: float
    final_loss: float


def train(
    method: Method,
    batches: list[Batch],
    objective: str,
    *,
    steps: int,
    lr: float,
    seed: int,
) -> TrainStats:
    """``steps`` AdamW steps (warm-up then cosine decay) over ``batches`` in a seeded order."""
    params = method.parameters()
    if not method.trains or not params:
        return TrainStats(float("nan"), float("nan"))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return (
            0.5
            * (
                1 + torch.cos(torch.tensor(torch.pi * (step - warmup) / max(1, steps - warmup)))
            ).item()
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    order = list(range(len(batches)))
    rng = random.Random(seed)
    times: list[float] = []
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        if step % len(order) == 0:
            rng.shuffle(order)
        start = time.perf_counter()
        loss = objective_loss(method, batches[order[step % len(order)]], objective)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        method.after_step(opt)
        sched.step()
        times.append(time.perf_counter() - start)
    warm = times[min(3, len(times) - 1) :]
    return TrainStats(statistics.median(warm), float(loss.detach()))
