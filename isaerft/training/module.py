"""``ISaeRFTLightningModule``: the objective, regularisers and optimizer around an ISaeRFTModel."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch

from isaerft.model import ISaeRFTModel
from isaerft.training.objectives import dpo_loss, kl_to_base, next_token_loss, sequence_logprobs
from isaerft.training.preference import reference_free_preference_loss
from isaerft.training.prefix_cache import PrefixBoundary, run_from_prefix
from isaerft.training.recipe import ObjectiveConfig, OptimConfig
from isaerft.training.resolve import place
from isaerft.training.sparsity import proximal_l1_

Batch = dict[str, Any]


# A component parameter this large means the optimiser diverged (scales, biases and MLP
# weights act on SAE latents of order 1-100); no useful edit is anywhere near it.
DIVERGED_PARAMETER = 1e6
REMEDY = (
    "Lower optim.lr or set optim.grad_clip (or check the data), then run the same command "
    "again: it resumes from the last good checkpoint with the new optim settings"
)


# A finished training whose loss ended this far above where it started (both rules) did not
# fit the data: it diverged below the parameter limit (e.g. Adam with a learning rate ~1e3).
# Each rule alone misfires: 2x is batch noise on a small loss, 1 nat is noise on a large one.
LOSS_BLOWUP_FACTOR = 3.0  # a single start batch vs a 10-step mean: room for batch noise
LOSS_BLOWUP_NATS = 2.0
LOSS_WINDOW = 10
"""The final training loss is the mean of the last ``LOSS_WINDOW`` steps' losses."""


class TrainingWarning(UserWarning):
    """A training that finished, but whose result should not be trusted as it is."""


class TrainingDivergedError(ValueError):
    """Training diverged (a parameter exploded); it stops before a checkpoint of that state."""


class NonFiniteLossError(TrainingDivergedError):
    """The loss, a gradient or a parameter became NaN or infinite; training stops and the last
    good checkpoint (every parameter finite) stays."""


class ISaeRFTLightningModule(pl.LightningModule):
    """Trains the components of an :class:`~isaerft.ISaeRFTModel` with Lightning.

    The loss is the objective (``lm``, ``sft``, ``dpo`` or ``reps``) plus ``l1_coefficient``
    times the L1 deviation from identity plus ``kl_coefficient`` times the KL to the base model
    on general data; each part is logged (``train/objective``, ``train/l1``, ``train/kl``).
    Checkpoints hold only the trainable tensors (plus optimizer and loop state), never the
    frozen model or SAEs.

    Args:
        model: the model whose components train.
        objective: which loss and regularisers.
        optim: optimizer and schedule.
        total_steps: optimizer steps in the run (for the schedule).
        boundary: set when batches carry prefix-cached activations.
        check_tag: stored in checkpoints and checked on resume (recipe + data identity).
        log_every_n_steps: how often the number of moved latents is logged.
    """

    def __init__(
        self,
        model: ISaeRFTModel,
        objective: ObjectiveConfig,
        optim: OptimConfig,
        total_steps: int,
        boundary: PrefixBoundary | None = None,
        check_tag: str = "",
        log_every_n_steps: int = 10,
    ) -> None:
        super().__init__()
        self.isaerft = model
        self.objective, self.optim = objective, optim
        self.total_steps, self.boundary, self.check_tag = total_steps, boundary, check_tag
        self.log_every_n_steps = log_every_n_steps
        self.l1_coefficient = model.config.l1_coefficient
        self.strict_loading = False  # checkpoints carry only the trainable tensors
        self.tokens_seen = 0
        self.last_losses: dict[str, float] = {}
        # The loss before the first update (the base model's), kept in checkpoints, and the
        # losses of the last steps after it: see loss_blowup().
        self.loss_start: float | None = None
        self._start_losses: list[float] = []
        self.recent_losses: deque[float] = deque(maxlen=LOSS_WINDOW)

    # --- forward ---------------------------------------------------------------------------

    def logits(self, seq: Batch, *, base: bool = False) -> torch.Tensor:
        """Logits for a collated batch (tokens, or prefix-cached activations)."""
        if "resid" in seq:
            if self.boundary is None:
                raise ValueError("batch has cached activations but the module has no boundary")
            return run_from_prefix(self.isaerft, self.boundary, seq, enabled=not base)
        kwargs = {"attention_mask": seq["attention_mask"], "return_type": "logits"}
        if base:
            with self.isaerft.disabled():
                return self.isaerft(seq["input_ids"], **kwargs)  # type: ignore[no-any-return]
        return self.isaerft(seq["input_ids"], **kwargs)  # type: ignore[no-any-return]

    def compute_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The total loss and its parts for one batch (``{"main": ..., "kl": ...}``)."""
        main = batch["main"]
        logits = self.logits(main)
        # The L1 of this forward (the trained edit), before any other forward overwrites it.
        l1 = self.isaerft.deviation_l1()
        parts: dict[str, torch.Tensor] = {}
        if self.objective.kind == "reps":
            parts["objective"], parts["preference_accuracy"] = self._reps_loss(logits, main)
        elif self.objective.kind == "dpo":
            policy = sequence_logprobs(logits, main["input_ids"], main["loss_mask"])
            with torch.no_grad():
                ref_logits = self.logits(main, base=True)
                reference = sequence_logprobs(ref_logits, main["input_ids"], main["loss_mask"])
            parts["objective"], parts["reward_accuracy"] = dpo_loss(
                policy,
                reference,
                self.objective.dpo_beta,
                main["denominator"],
                distinct_pairs(main["input_ids"], main["loss_mask"]),
            )
        else:
            parts["objective"] = next_token_loss(
                logits, main["input_ids"], main["loss_mask"], main["denominator"]
            )
        parts["l1"] = l1.detach()
        # A proximal L1 update applies the penalty after the step instead (sparsity.py).
        total = parts["objective"]
        if self.optim.l1_update == "gradient":
            total = total + self.l1_coefficient * l1
        if self.objective.kl_coefficient > 0 and "kl" in batch:
            kl_batch = batch["kl"]
            with torch.no_grad():
                base_logits = self.logits(kl_batch, base=True)
            kl = kl_to_base(
                self.logits(kl_batch), base_logits, kl_batch["loss_mask"], kl_batch["denominator"]
            )
            parts["kl"] = kl.detach()
            total = total + self.objective.kl_coefficient * kl
        parts["loss"] = total
        return parts

    def _reps_loss(self, logits: torch.Tensor, seq: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference-free preference loss of :mod:`isaerft.training.preference`: the edit
        must prefer the chosen response, and (``reps_bidirectional``) the edit applied with
        factor ``-1`` the rejected one."""
        ids, mask = seq["input_ids"], seq["loss_mask"]
        steered = sequence_logprobs(logits, ids, mask)
        suppressed = None
        if self.objective.reps_bidirectional:
            with self.isaerft.edit_factor(-1.0):
                suppressed = sequence_logprobs(self.logits(seq), ids, mask)
        return reference_free_preference_loss(
            steered,
            mask[:, 1:].sum(-1),
            seq["denominator"],
            suppressed_logps=suppressed,
            beta=self.objective.reps_beta,
            gamma=self.objective.reps_gamma,
        )

    # --- Lightning hooks -------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Compute and log the loss; stop on a non-finite loss (all ranks together)."""
        parts = self.compute_losses(batch)
        loss = parts["loss"]
        bad = not bool(torch.isfinite(loss.detach()))
        # Decide together: one rank raising alone would leave the others waiting forever.
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            values = {k: float(v.detach()) for k, v in parts.items()}
            raise NonFiniteLossError(
                f"the loss became non-finite at step {self.global_step} ({values}); training "
                f"stopped and the last good checkpoint is kept. {REMEDY}"
            )
        sync = self.trainer.world_size > 1
        # Each rank's loss is (its sum) / (global count / world): their mean is the global loss.
        logged = {
            "train/loss": loss.detach(),
            "train/objective": parts["objective"].detach(),
            "train/l1": parts["l1"],
            "train/l1_weighted": parts["l1"] * self.l1_coefficient,
        }
        if "kl" in parts:
            logged["train/kl"] = parts["kl"]
        for key in ("reward_accuracy", "preference_accuracy"):
            if key in parts:
                logged[f"train/{key}"] = parts[key]
        self.log_dict(logged, prog_bar=False, sync_dist=sync, reduce_fx="mean")
        self.log("loss", logged["train/loss"], prog_bar=True, logger=False, sync_dist=sync)
        self.tokens_seen += int(batch["main"]["global_tokens"])
        self.last_losses = {k: float(v) for k, v in logged.items()}
        if self.global_step == 0:  # every micro-batch before the first update
            self._start_losses.append(self.last_losses["train/loss"])
            self.loss_start = sum(self._start_losses) / len(self._start_losses)
        else:
            self.recent_losses.append(self.last_losses["train/loss"])
        return loss

    def loss_blowup(self) -> str | None:
        """A warning when the training loss ended far above where it started, else ``None``.

        The rule: the mean loss of the last :data:`LOSS_WINDOW` steps is more than
        :data:`LOSS_BLOWUP_FACTOR` times *and* :data:`LOSS_BLOWUP_NATS` nats above the loss
        before the first update (components at identity). Minimising a loss that starts there
        never ends that far above it unless the optimiser diverged.
        """
        if self.loss_start is None or not self.recent_losses:
            return None
        start = self.loss_start
        final = sum(self.recent_losses) / len(self.recent_losses)
        if final <= start + LOSS_BLOWUP_NATS or final <= LOSS_BLOWUP_FACTOR * start:
            return None
        with torch.no_grad():
            largest = max(
                float(p.detach().abs().max()) for p in self.isaerft.trainable_parameters()
            )
        return (
            f"the training loss rose from {start:.4g} before the first update to {final:.4g} "
            f"(mean of the last {len(self.recent_losses)} steps), more than "
            f"{LOSS_BLOWUP_FACTOR:g}x and {LOSS_BLOWUP_NATS:g} nats above where it started: the "
            f"optimisation diverged (component parameters reach {largest:.3g}) and the saved "
            f"edits do not fit the data; lower optim.lr (now {self.optim.lr:g}) or set "
            "optim.grad_clip, and train again"
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log how many latents moved beyond ``objective.moved_tolerance``."""
        if self.trainer.global_step % self.log_every_n_steps == 0:
            moved = self.isaerft.num_moved_latents(self.objective.moved_tolerance)
            self.log("train/moved_latents", float(moved), prog_bar=True)

    def on_train_end(self) -> None:
        """Write the final step to the loggers when it was not a logging step."""
        # Lightning writes every n-th step; make sure the final step reaches the metrics file.
        step = self.trainer.global_step
        if step % self.log_every_n_steps == 0 or not self.trainer.loggers:
            return
        metrics = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("train/")
        }
        metrics["train/moved_latents"] = float(
            self.isaerft.num_moved_latents(self.objective.moved_tolerance)
        )
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=step - 1)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Stop before a non-finite gradient reaches the parameters."""
        grads = [p.grad for p in self.isaerft.trainable_parameters() if p.grad is not None]
        if grads and not all(bool(torch.isfinite(g).all()) for g in grads):
            raise NonFiniteLossError(
                f"a gradient became non-finite at step {self.global_step}; training stopped "
                f"before the update and the last good checkpoint is kept. {REMEDY}"
            )

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Step (and apply a proximal L1 update), then stop if the update left a parameter
        non-finite or exploded: this runs before any checkpoint of the step is written, so the
        last checkpoint stays good."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.optim.l1_update == "proximal":
            proximal_l1_(optimizer, self.isaerft.l1_targets(), self.l1_coefficient)
        with torch.no_grad():
            largest = max(
                float(p.detach().abs().max()) for p in self.isaerft.trainable_parameters()
            )
        step = self.global_step + 1
        if not math.isfinite(largest):
            raise NonFiniteLossError(
                f"a component parameter became non-finite in the update of step {step}; "
                f"training stopped and the last good checkpoint is kept. {REMEDY}"
            )
        if largest > DIVERGED_PARAMETER:
            raise TrainingDivergedError(
                f"training diverged at step {step}: a component parameter reached "
                f"{largest:.3g} (limit {DIVERGED_PARAMETER:g}); training stopped and the last "
                f"good checkpoint is kept. {REMEDY}"
            )

    def on_train_start(self) -> None:
        """Apply this recipe's optim settings, also over those restored from a checkpoint:
        a resume may lower ``optim.lr`` or change the schedule, betas or weight decay."""
        cfg = self.optim
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                scheduler.base_lrs = [cfg.lr for _ in scheduler.base_lrs]
                scheduler.lr_lambdas = [
                    lr_schedule(cfg.scheduler, cfg.warmup_steps, self.total_steps)
                    for _ in scheduler.lr_lambdas
                ]
                factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
                for group in scheduler.optimizer.param_groups:
                    group["initial_lr"] = cfg.lr
                    group["lr"] = cfg.lr * factor
                    group["weight_decay"] = cfg.weight_decay
                    if "betas" in group:
                        group["betas"] = (cfg.betas[0], cfg.betas[1])

    def configure_optimizers(self) -> Any:
        """The optimizer over the component parameters and a per-step LR schedule."""
        params = self.isaerft.trainable_parameters()
        cfg = self.optim
        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
            betas = (cfg.betas[0], cfg.betas[1])
            optimizer = cls(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
        schedule = lr_schedule(cfg.scheduler, cfg.warmup_steps, self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_fit_start(self) -> None:
        """Keep TransformerLens' ``cfg.device`` in step with the parameters' device."""
        place(self.isaerft.model, (), str(self.device))

    def _trainable_keys(self) -> list[str]:
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the trainable tensors, and tag the checkpoint with the run identity."""
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k: state[k] for k in self._trainable_keys()}
        checkpoint["isaerft"] = {
            "check_tag": self.check_tag,
            "optimizer": self.optim.optimizer,
            "loss_start": self.loss_start,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another run or lacking component weights."""
        saved_tag = checkpoint.get("isaerft", {}).get("check_tag")
        if saved_tag is not None and self.check_tag and saved_tag != self.check_tag:
            raise ValueError(
                "the checkpoint belongs to a run with a different recipe or data; resume it with "
                "the same recipe, or start over (trainer.resume=never or another output_dir)"
            )
        saved_optimizer = checkpoint.get("isaerft", {}).get("optimizer", self.optim.optimizer)
        if saved_optimizer != self.optim.optimizer:
            raise ValueError(
                f"the checkpoint was trained with optim.optimizer={saved_optimizer}; a resume may "
                "change lr, schedule, betas, weight_decay and grad_clip, but not the optimizer: "
                f"set optim.optimizer={saved_optimizer}, or start over (trainer.resume=never)"
            )
        loss_start = checkpoint.get("isaerft", {}).get("loss_start")
        if loss_start is not None:
            self.loss_start = float(loss_start)
        missing = sorted(set(self._trainable_keys()) - set(checkpoint["state_dict"]))
        if missing:
            raise ValueError(f"the checkpoint lacks component weights {missing}; wrong checkpoint?")


def distinct_pairs(input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """For a batch stacked ``[chosen; rejected]``: which pairs differ in tokens or targets.
    Identical pairs carry no preference, and float noise must not train on them."""
    n = input_ids.shape[0] // 2
    differs = (input_ids[:n] != input_ids[n:]).any(-1) | (loss_mask[:n] != loss_mask[n:]).any(-1)
    return differs.to(torch.float32)


def lr_schedule(kind: str, warmup_steps: int, total_steps: int) -> Any:
    """The LR multiplier per step: linear warm-up, then constant, linear or cosine decay."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(1.0, progress)
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
