"""The organism's language model: a small TransformerLens ``HookedTransformer`` trained from scratch.

Documents are packed whole into rows of ``n_ctx`` tokens (``<bos> doc <eos> <bos> doc <eos> ...``,
right-padded); the loss skips padding and the trivial ``<eos> -> <bos>`` step. Evaluation runs each
held-out document on its own from position 0, as fine-tuning and the audits will.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerBase

from isaerft.configbase import ConfigBase, ConfigError, check_number


@dataclass(frozen=True)
class LMConfig(ConfigBase):
    """Size and training schedule of the organism's transformer."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 128
    batch_size: int = 32
    steps: int = 1000
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01

    config_name: ClassVar[str] = "organism lm"

    def validate(self) -> None:
        """Ranges (types are checked by :class:`~isaerft.configbase.ConfigBase`)."""
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "batch_size", "steps"):
            check_number(self.where(name), getattr(self, name), minimum=1, integer=True)
        check_number(self.where("warmup_steps"), self.warmup_steps, minimum=0, integer=True)
        check_number(self.where("lr"), self.lr, minimum=0, exclusive_minimum=True)
        check_number(self.where("weight_decay"), self.weight_decay, minimum=0)
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"{self.where('d_model')}={self.d_model} is invalid: it must be a multiple of "
                f"n_heads={self.n_heads} (each head gets d_model / n_heads dimensions)"
            )


def make_model(
    cfg: LMConfig, tokenizer: PreTrainedTokenizerBase, name: str, seed: int
) -> HookedTransformer:
    """A freshly initialised ``HookedTransformer`` for ``tokenizer`` (loaded from disk)."""
    torch.manual_seed(seed)
    ht_cfg = HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads,
        d_mlp=cfg.d_mlp,
        n_ctx=cfg.n_ctx,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        model_name=name,
        seed=seed,
        default_prepend_bos=True,
    )
    return HookedTransformer(ht_cfg, tokenizer=tokenizer, move_to_device=False)


def pack(docs: Sequence[Sequence[int]], n_ctx: int, bos: int, eos: int, pad: int) -> torch.Tensor:
    """Greedily pack ``<bos> doc <eos>`` sequences into right-padded rows of ``n_ctx`` tokens."""
    rows: list[list[int]] = []
    row: list[int] = []
    for doc in docs:
        seq = [bos, *doc[: n_ctx - 2], eos]
        if len(row) + len(seq) > n_ctx:
            rows.append(row + [pad] * (n_ctx - len(row)))
            row = []
        row += seq
    if row:
        rows.append(row + [pad] * (n_ctx - len(row)))
    return torch.tensor(rows, dtype=torch.long)


def _loss(model: HookedTransformer, rows: torch.Tensor, bos: int, pad: int) -> torch.Tensor:
    logits = model(rows, return_type="logits")
    targets = rows[:, 1:].clone()
    targets[(targets == pad) | (targets == bos)] = -100
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)


def train_lm(
    model: HookedTransformer,
    rows: torch.Tensor,
    cfg: LMConfig,
    *,
    seed: int,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` on packed ``rows`` with AdamW and a warmup + cosine schedule; returns losses."""
    assert model.tokenizer is not None
    bos, pad = int(model.tokenizer.bos_token_id), int(model.tokenizer.pad_token_id)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "W_" in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "W_" in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=gen)
    losses: list[float] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="Training LM", disable=not progress, leave=False)
    pos = 0
    for _ in bar:
        if pos + cfg.batch_size > len(order):
            order, pos = torch.randperm(len(rows), generator=gen), 0
        batch = rows[order[pos : pos + cfg.batch_size]]
        pos += cfg.batch_size
        loss = _loss(model, batch, bos, pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    model.eval()
    return losses


def doc_batches(
    docs: Sequence[Sequence[int]], bos: int, eos: int, pad: int, batch_size: int, n_ctx: int
) -> list[torch.Tensor]:
    """``<bos> doc <eos>`` rows (one document each, from position 0), batched and right-padded."""
    out: list[torch.Tensor] = []
    for i in range(0, len(docs), batch_size):
        seqs = [[bos, *d[: n_ctx - 2], eos] for d in docs[i : i + batch_size]]
        width = max(len(s) for s in seqs)
        out.append(torch.tensor([s + [pad] * (width - len(s)) for s in seqs], dtype=torch.long))
    return out


@torch.no_grad()
def evaluate_lm(
    model: HookedTransformer, docs: Sequence[Sequence[int]], batch_size: int = 64
) -> float:
    """Mean next-token loss (nats) over held-out documents, each run alone from position 0."""
    tok = model.tokenizer
    assert tok is not None
    bos, eos, pad = int(tok.bos_token_id), int(tok.eos_token_id), int(tok.pad_token_id)
    total, count = 0.0, 0
    for rows in doc_batches(docs, bos, eos, pad, batch_size, model.cfg.n_ctx):
        logits = model(rows, return_type="logits")
        targets = rows[:, 1:].clone()
        targets[targets == pad] = -100
        total += F.cross_entropy(
            logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
        ).item()
        count += int((targets != -100).sum())
    return total / max(count, 1)


def unigram_loss(
    train: Sequence[Sequence[int]], held_out: Sequence[Sequence[int]], eos: int
) -> float:
    """Loss (nats/token) of an add-one unigram model fit on ``train``, on ``held_out`` (+ ``<eos>``)."""
    counts: Counter[int] = Counter()
    for doc in train:
        counts.update(doc)
    counts[eos] += len(train)
    vocab = set(counts) | {t for doc in held_out for t in doc}
    total = sum(counts.values()) + len(vocab)
    nll, n = 0.0, 0
    for doc in held_out:
        for t in [*doc, eos]:
            nll -= math.log((counts[t] + 1) / total)
            n += 1
    return nll / max(n, 1)
