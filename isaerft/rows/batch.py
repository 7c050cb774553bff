"""Right-padded batches of token sequences.

Right padding never moves the real positions of a causal model, so a padded batch gives the
same activations at the real positions as one sequence at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def right_pad(
    sequences: Sequence[torch.Tensor], *, width: int | None = None, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, mask)``: the 1-D ``sequences`` right-padded with ``pad_id`` to ``width``
    (default: the longest) as one ``(batch, width)`` long tensor, and a bool mask of the real
    positions."""
    width = max((len(s) for s in sequences), default=0) if width is None else width
    tokens = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, seq in enumerate(sequences):
        tokens[i, : len(seq)] = seq
        mask[i, : len(seq)] = True
    return tokens, mask


def completion_mask(
    lengths: Sequence[int], prompt_lengths: Sequence[int], width: int
) -> torch.Tensor:
    """``(batch, width)`` bool mask of each row's completion tokens: from its prompt length
    (at least 1: position 0 is never predicted) to its length."""
    target = torch.zeros((len(lengths), width), dtype=torch.bool)
    for i, (n, n_prompt) in enumerate(zip(lengths, prompt_lengths)):
        target[i, max(1, n_prompt) : n] = True
    return target


def padded_batches(
    sequences: Sequence[torch.Tensor],
    prompt_lengths: Sequence[int],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(tokens, attention_mask, completion_mask)`` batches of the sequences, in order,
    right-padded; the attention mask is 0/1 (long), the completion mask marks each row's
    completion tokens (see :func:`completion_mask`)."""
    for start in range(0, len(sequences), batch_size):
        group = sequences[start : start + batch_size]
        tokens, mask = right_pad(group)
        target = completion_mask(
            [len(s) for s in group], prompt_lengths[start : start + batch_size], tokens.shape[1]
        )
        yield tokens.to(device), mask.long().to(device), target.to(device)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log p(tokens[:, t + 1] | tokens[:, :t + 1])``, shape ``(batch, seq - 1)``: what a
    batch's logits give each next token (training's loss and the audit's scores both)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
