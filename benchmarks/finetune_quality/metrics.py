"""Held-out metrics: answer loss, behaviour success, capability KL, suppression, memory."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from benchmarks.common import greedy_continuations
from isaerft.training.objectives import sequence_logprobs

from .methods import Method
from .tasks import Row, words_of
from .train import Batch, logits_loss

Logits = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def answer_loss(logits: Logits, batches: list[Batch]) -> float:
    """Mean NLL (nats/token) of the target answers (the chosen half of each batch)."""
    total, count = 0.0, 0
    for b in batches:
        n = b.tokens.shape[0] // 2
        tokens, mask = b.tokens[:n], b.loss_mask[:n]
        total -= float(sequence_logprobs(logits(tokens), tokens, mask).sum())
        count += int(mask[:, 1:].sum())
    return total / max(count, 1)


@torch.no_grad()
def heldout_loss(logits: Logits, batches: list[Batch], objective: str) -> float:
    """The task's held-out loss, for ``gap_closed``: answer NLL per token for ``sft``; for the
    preference objectives their own loss per pair (``reps`` one-directional for every method, so
    that methods with and without a factor are compared on the same quantity). The answer NLL is
    no measure of a preference: DPO may lower the chosen answers' likelihood while it widens
    their margin over the rejected ones."""
    if objective == "sft":
        return answer_loss(logits, batches)
    pairs = [b.tokens.shape[0] // 2 for b in batches]
    losses = [float(logits_loss(logits, b, objective)) * n for b, n in zip(batches, pairs)]
    return sum(losses) / max(sum(pairs), 1)


def gap_closed(base: float, method: float, full: float) -> float:
    """``(base - method) / (base - full)``: 1 = as good as full fine-tuning, 0 = no better than base."""
    denom = base - full
    return (base - method) / denom if abs(denom) > 1e-9 else float("nan")


def greedy_answers(
    logits: Logits, prompts: list[list[int]], eos: int, max_new: int
) -> list[list[int]]:
    """Greedy continuations up to and including ``<eos>`` (one right-padded batch, no KV cache:
    :func:`benchmarks.common.greedy_continuations`)."""
    return greedy_continuations(logits, prompts, {eos}, max_new)


def behaviour_success(
    logits: Logits,
    rows: list[Row],
    tokenizer: PreTrainedTokenizerBase,
    judge: Callable[[list[str]], bool],
    max_new: int = 32,
) -> float:
    """Share of held-out prompts whose greedy answer shows the target behaviour."""
    answers = greedy_answers(logits, [p for p, _, _ in rows], int(tokenizer.eos_token_id), max_new)
    return sum(judge(words_of(tokenizer, a)) for a in answers) / max(len(answers), 1)


@torch.no_grad()
def capability_kl(logits: Logits, base: Logits, docs: list[torch.Tensor]) -> float:
    """Mean per-token ``KL(method || base)`` of the next-token distributions on unrelated text."""
    total, count = 0.0, 0
    for tokens in docs:
        logp = F.log_softmax(logits(tokens).float(), -1)
        base_logp = F.log_softmax(base(tokens).float(), -1)
        total += float((logp.exp() * (logp - base_logp)).sum())
        count += tokens.numel()
    return total / max(count, 1)


@torch.no_grad()
def suppression(method: Method, batches: list[Batch]) -> float | None:
    """Share of held-out prompts where the edit at factor ``-1`` makes the target answer less
    likely than the base model does (``None`` for methods without a factor)."""
    if not method.supports_factor:
        return None
    hits, count = 0, 0
    for b in batches:
        n = b.tokens.shape[0] // 2
        tokens, mask = b.tokens[:n], b.loss_mask[:n]
        with method.factor(-1.0):
            logps = sequence_logprobs(method.logits(tokens), tokens, mask)
        hits += int((logps < b.reference[:n]).sum())
        count += n
    return hits / max(count, 1)
