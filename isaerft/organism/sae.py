"""The organism's SAE: activations at one hook, SAELens' own ``SAETrainer``, evaluation, saving.

Activations of every position (``<bos>`` and ``<eos>`` included, so a spliced SAE sees nothing it
was not trained on) are collected once, then streamed to ``sae_lens.training.sae_trainer.SAETrainer``
in shuffled batches. Training normalises activations (``expected_average_only_in``), which the
trainer folds back into the weights; decoder rows are then folded to unit norm, so the saved SAE
works on raw activations with ``normalize_activations="none"``. No wandb.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import torch
import torch.nn.functional as F
from sae_lens import SAE
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.saes.sae import TrainingSAE
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from isaerft.configbase import ConfigBase, check_choice, check_number
from isaerft.organism.lm import doc_batches

SAE_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")
"""Residual-stream hooks an organism SAE can read."""

SAE_ARCHITECTURES = ("topk", "standard")
"""SAE kinds :func:`train_sae` trains."""


@dataclass(frozen=True)
class OrganismSAEConfig(ConfigBase):
    """Width, sparsity and schedule of the organism's TopK SAE.

    Named apart from ``sae_lens.SAEConfig`` (the config of a loaded SAE), which it is not.
    """

    layer: int = 0
    hook: str = "hook_resid_post"
    expansion: int = 8
    k: int = 16
    architecture: str = "topk"
    l1_coefficient: float = 2.0
    steps: int = 1500
    batch_size: int = 1024
    lr: float = 1e-3

    config_name: ClassVar[str] = "organism sae"

    def validate(self) -> None:
        """Ranges and choices (types are checked by :class:`~isaerft.configbase.ConfigBase`)."""
        check_number(self.where("layer"), self.layer, minimum=0, integer=True)
        check_choice(self.where("hook"), self.hook, SAE_HOOKS)
        check_choice(self.where("architecture"), self.architecture, SAE_ARCHITECTURES)
        for name in ("expansion", "k", "steps", "batch_size"):
            check_number(self.where(name), getattr(self, name), minimum=1, integer=True)
        check_number(self.where("l1_coefficient"), self.l1_coefficient, minimum=0)
        check_number(self.where("lr"), self.lr, minimum=0, exclusive_minimum=True)

    def hook_name(self) -> str:
        """TransformerLens hook name, e.g. ``blocks.0.hook_resid_post``."""
        return f"blocks.{self.layer}.{self.hook}"


def _doc_rows(model: HookedTransformer, docs: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    tok = model.tokenizer
    assert tok is not None
    bos, eos, pad = int(tok.bos_token_id), int(tok.eos_token_id), int(tok.pad_token_id)
    return doc_batches(docs, bos, eos, pad, 64, model.cfg.n_ctx)


@torch.no_grad()
def collect_activations(
    model: HookedTransformer, docs: Sequence[Sequence[int]], hook_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations ``[n_tokens, d_model]`` at ``hook_name`` and their token ids ``[n_tokens]``.

    Each document runs alone as ``<bos> doc <eos>``; padding positions are dropped.
    """
    pad = int(model.tokenizer.pad_token_id) if model.tokenizer is not None else 0
    acts, ids = [], []
    for rows in _doc_rows(model, docs):
        _, cache = model.run_with_cache(rows, names_filter=hook_name, return_type=None)
        keep = rows != pad
        acts.append(cache[hook_name][keep].float())
        ids.append(rows[keep])
    return torch.cat(acts), torch.cat(ids)


def _batches(acts: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(acts), generator=gen)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield acts[perm[i : i + batch_size]]


def train_sae(
    acts: torch.Tensor,
    cfg: OrganismSAEConfig,
    *,
    model_name: str,
    context_size: int,
    seed: int,
    progress: bool = True,
    init_directions: torch.Tensor | None = None,
) -> TrainingSAE[Any]:
    """Train a TopK SAE on ``acts`` with SAELens' ``SAETrainer``; returns it folded, in eval mode.

    ``init_directions`` (``[m, d_in]``) seed the first ``m`` decoder rows (and tied encoder
    columns), e.g. with per-word mean activations; the decoder bias starts at the mean activation.
    """
    torch.manual_seed(seed)
    d_in = acts.shape[1]
    sae: TrainingSAE[Any]
    if cfg.architecture == "topk":
        sae = TopKTrainingSAE(
            TopKTrainingSAEConfig(
                d_in=d_in,
                d_sae=d_in * cfg.expansion,
                k=cfg.k,
                normalize_activations="expected_average_only_in",
            )
        )
    elif cfg.architecture == "standard":
        sae = StandardTrainingSAE(
            StandardTrainingSAEConfig(
                d_in=d_in,
                d_sae=d_in * cfg.expansion,
                l1_coefficient=cfg.l1_coefficient,
                l1_warm_up_steps=cfg.steps // 10,
                normalize_activations="expected_average_only_in",
            )
        )
    else:
        raise ValueError(f"unknown SAE architecture {cfg.architecture!r}; use 'topk' or 'standard'")
    meta = sae.cfg.metadata
    meta.model_name = model_name
    meta.hook_name = cfg.hook_name()
    meta.hook_head_index = None
    meta.context_size = context_size
    meta.prepend_bos = True
    meta.exclude_special_tokens = False
    meta.dataset_path = "isaerft-organism"
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.steps * cfg.batch_size,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=max(1, cfg.steps // 20),
        lr_decay_steps=cfg.steps // 5,
        device="cpu",
        dead_feature_window=max(50, cfg.steps // 10),
        feature_sampling_window=max(100, cfg.steps // 5),
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=20,
    )
    data = _batches(acts, cfg.batch_size, seed)
    trainer: SAETrainer[Any, Any] = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=data)
    # The same estimate SAETrainer.fit would make (it keeps a preset one), known up front so the
    # decoder bias and seeded directions can start in the scaled space.
    scale = d_in**0.5 / float(acts.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = scale
    with torch.no_grad():
        sae.b_dec.data.copy_(acts.mean(0) * scale)
        if init_directions is not None:
            m = min(len(init_directions), sae.cfg.d_sae)
            dirs = (
                F.normalize(init_directions[:m].float(), dim=-1) * sae.W_dec.norm(dim=-1)[:m, None]
            )
            sae.W_dec.data[:m] = dirs
            sae.W_enc.data[:, :m] = dirs.T
    with _tqdm_disabled(not progress):
        trainer.fit()
    sae.fold_W_dec_norm()
    meta.num_dead_features = int(trainer.dead_neurons.sum())
    return sae.eval()


@contextlib.contextmanager
def _tqdm_disabled(disable: bool) -> Iterator[None]:
    """SAETrainer opens its own tqdm bars; this is the only way to silence them."""
    import sae_lens.training.activation_scaler as scaler_mod
    import sae_lens.training.sae_trainer as trainer_mod

    if not disable:
        yield
        return
    quiet = functools.partial(tqdm, disable=True)
    with (
        mock.patch.object(trainer_mod, "tqdm", quiet),
        mock.patch.object(scaler_mod, "tqdm", quiet),
    ):
        yield


def save_sae(sae: TrainingSAE[Any], path: str | Path) -> Path:
    """Save in SAELens' inference format (``cfg.json`` + ``sae_weights.safetensors``)."""
    if sae.cfg.normalize_activations != "none":
        raise ValueError("refusing to save an SAE whose activation normalisation is not folded")
    sae.save_inference_model(str(path))
    return Path(path)


@torch.no_grad()
def evaluate_sae(
    model: HookedTransformer,
    sae: SAE[Any],
    docs: Sequence[Sequence[int]],
    hook_name: str,
) -> dict[str, float]:
    """Held-out explained variance, L0, dead latents and CE-loss recovered of ``sae`` at ``hook_name``.

    CE recovered is ``(ce_zero - ce_sae) / (ce_zero - ce_clean)`` where the hook activation is
    replaced by the SAE reconstruction (``ce_sae``) or by zeros (``ce_zero``).
    """
    acts, _ = collect_activations(model, docs, hook_name)
    feats = sae.encode(acts)
    recon = sae.decode(feats)
    resid = (acts - recon).pow(2).sum(-1)
    total = (acts - acts.mean(0)).pow(2).sum(-1)
    fired = (feats > 0).any(0)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    count = 0
    pad = int(model.tokenizer.pad_token_id) if model.tokenizer is not None else 0
    for rows in _doc_rows(model, docs):
        targets = rows[:, 1:].clone()
        targets[targets == pad] = -100
        n = int((targets != -100).sum())
        count += n
        for mode in ce:
            hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = []
            if mode == "sae":
                hooks = [(hook_name, lambda x, hook: sae(x))]
            elif mode == "zero":
                hooks = [(hook_name, lambda x, hook: torch.zeros_like(x))]
            logits = model.run_with_hooks(rows, return_type="logits", fwd_hooks=hooks)
            ce[mode] += F.cross_entropy(
                logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
            ).item()
    ce = {k: v / max(count, 1) for k, v in ce.items()}
    return {
        "explained_variance": float(1 - resid.sum() / total.sum()),
        "l0": float((feats > 0).float().sum(-1).mean()),
        "dead_latents": int((~fired).sum()),
        "dead_fraction": float((~fired).float().mean()),
        "ce_loss_clean": ce["clean"],
        "ce_loss_with_sae": ce["sae"],
        "ce_loss_zero_ablation": ce["zero"],
        "ce_loss_recovered": (ce["zero"] - ce["sae"]) / max(ce["zero"] - ce["clean"], 1e-9),
        "n_tokens": len(acts),
    }
