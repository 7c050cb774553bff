"""``train(recipe) -> RunResult``: training a recipe into a run folder.

The run folder's layout, and when a folder may be written as one, live in :mod:`isaerft.runs`;
its record (``run.json``), and reading a run back (``load_run``), in
:mod:`isaerft.training.record`; what a resume checks, in :mod:`isaerft.training.resume`.
"""

from __future__ import annotations

import math
import signal
import time
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from sae_lens import SAE

from isaerft._io import sha256_file, write_json, write_text
from isaerft.artifact import WEIGHTS_FILE
from isaerft.backends import LanguageModel
from isaerft.model import ISaeRFTModel
from isaerft.runs import (
    DATA_DIR,
    INTERVENTION_DIR,
    LAST_CHECKPOINT,
    LOGS_DIR,
    METRICS_FILE,
    RECIPE_FILE,
    RUN_FILE,
    RUN_ID,
    START_RECORD,
    SUMMARY_FILE,
    WEIGHTS_HASH,
    RunClaim,
    locked_run_dir,
    new_run_id,
    remove_results,
)
from isaerft.specs import resolve_data_spec, resolve_labels_spec
from isaerft.threads import resolve_threads, torch_threads
from isaerft.training import resolve
from isaerft.training.callbacks import MovedLatent, read_latent_labels, top_moved_latents
from isaerft.training.data import TokenizedData, load_rows, tokenize
from isaerft.training.datamodule import ISaeRFTDataModule
from isaerft.training.logs import make_loggers, merge_metrics, quiet_lightning
from isaerft.training.module import ISaeRFTLightningModule, TrainingWarning
from isaerft.training.prefix_cache import PrefixCache, PrefixCacheStore, find_boundary
from isaerft.training.recipe import DataConfig, TrainRecipe
from isaerft.training.record import run_record
from isaerft.training.resume import (
    check_resumed_organisms,
    check_tag,
    checkpoint_step,
    resumed_run_id,
)
from isaerft.training.start import start_from
from isaerft.training.trainer import make_trainer

__all__ = ["RunResult", "train"]


@dataclass
class RunResult:
    """What :func:`train` returns: the trained model, the run directory and its summary."""

    run_dir: Path
    model: ISaeRFTModel
    summary: dict[str, Any]
    top_latents: list[MovedLatent]

    @property
    def intervention_dir(self) -> Path:
        """The saved intervention (``ISaeRFTModel.save_pretrained`` format)."""
        return self.run_dir / INTERVENTION_DIR


def train(
    recipe: TrainRecipe,
    *,
    model: LanguageModel | None = None,
    saes: Sequence[SAE[Any]] | None = None,
    prefix_cache: PrefixCacheStore | None = None,
    callbacks: Sequence[pl.Callback] = (),
    run_dir: str | Path | None = None,
) -> RunResult:
    """Train the recipe's components and write the run directory.

    Args:
        recipe: the validated recipe.
        model: an already-loaded frozen model to reuse (not modified); loaded from the
            recipe's spec when ``None``.
        saes: already-loaded SAEs to reuse, likewise.
        prefix_cache: a store shared between runs; used when ``trainer.prefix_cache`` is on.
        callbacks: extra Lightning callbacks.
        run_dir: overrides ``recipe.output_dir``.

    Returns:
        The :class:`RunResult` (on every rank; only global rank 0 writes files).

    Raises:
        isaerft.runs.RunFolderError: the run folder is not new, empty or an isaerft run, or
            another training is writing it (checked before anything is loaded).
        isaerft.specs.OrganismBuildError: an interrupted run would resume on another build
            of the model organism than the one it started on.

    A failure before the training starts (before ``run.json`` is written: bad data, a model
    that does not load) leaves the run folder as it was found. A training whose loss ends far
    above where it started warns (:class:`~isaerft.training.module.TrainingWarning`) and
    lists the warning in ``summary["warnings"]``.

    The training runs with the torch threads :func:`isaerft.threads.resolve_threads` picks
    (``ISAERFT_THREADS``, else ``trainer.threads``, else ``OMP_NUM_THREADS``, else the default)
    and gives the caller's thread count back when it returns or raises; ``summary.json``
    records the count as ``torch_threads``.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else recipe.run_dir
    threads = resolve_threads(recipe.trainer.threads).n  # a bad ISAERFT_THREADS: before any work
    is_zero = getattr(rank_zero_only, "rank", 0) == 0
    # Rank 0 owns the folder for the whole training; the other ranks only read from it. A
    # start that fails before run.json is written leaves the folder as it was found.
    lock: AbstractContextManager[RunClaim | None] = (
        locked_run_dir(run_dir) if is_zero else nullcontext(None)
    )
    with torch_threads(threads), lock as claim:
        return _train(
            recipe, model, saes, prefix_cache, callbacks, run_dir, claim, is_zero, started
        )


def _train(
    recipe: TrainRecipe,
    model: LanguageModel | None,
    saes: Sequence[SAE[Any]] | None,
    prefix_cache: PrefixCacheStore | None,
    callbacks: Sequence[pl.Callback],
    run_dir: Path,
    claim: RunClaim | None,
    is_zero: bool,
    started: float,
) -> RunResult:
    cfg = recipe.trainer
    checkpoint = run_dir / LAST_CHECKPOINT
    # Only an interrupted run resumes; a finished one (it has a summary) is trained afresh.
    finished = (run_dir / SUMMARY_FILE).is_file()
    resuming = cfg.resume == "auto" and checkpoint.is_file() and not finished
    run_id = resumed_run_id(run_dir) if resuming else None
    run_id = run_id or new_run_id()
    if resuming:
        check_resumed_organisms(run_dir, recipe)
    pl.seed_everything(cfg.seed, verbose=False)
    device = resolve.torch_device(cfg.accelerator)
    if model is None:
        model = resolve.load_recipe_model(recipe, device)
    if saes is None:
        saes = resolve.load_recipe_saes(recipe, device)
    resolve.place(model, saes, device)  # a model passed in may sit elsewhere
    wrapped = ISaeRFTModel(model, list(saes), recipe.intervention)
    start = start_from(wrapped, recipe.start_from) if recipe.start_from else None

    data_path = resolve_data_spec(recipe.data, recipe.model, run_dir / DATA_DIR)
    train_data = _tokenize(recipe.data, data_path, recipe.objective.kind, model)
    kl_data = None
    if recipe.objective.kl_data is not None and recipe.objective.kl_coefficient > 0:
        kl_path = resolve_data_spec(recipe.objective.kl_data, recipe.model, run_dir / DATA_DIR)
        kl_data = _tokenize(recipe.objective.kl_data, kl_path, "lm", model)

    accumulate = cfg.accumulate_grad_batches
    batches_per_epoch = len(train_data) // recipe.data.batch_size
    max_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches_per_epoch / accumulate))
    boundary, caches, kl_caches = None, None, None
    if cfg.prefix_cache:
        store = prefix_cache or PrefixCacheStore(cfg.prefix_cache_dir)
        boundary = find_boundary(wrapped)
        caches = _caches(store, wrapped, train_data, recipe.data.batch_size)
        kl_caches = _caches(store, wrapped, kl_data, recipe.data.batch_size) if kl_data else None

    tag = check_tag(recipe, train_data)
    labels_path = resolve_labels_spec(recipe.labels, recipe.sae)
    if is_zero:
        # The training starts here, after everything it needs has loaded: a failure before
        # this point leaves an earlier run in the folder intact (and the claim is undone).
        if not resuming:
            # Before run.json: an old intervention must never sit under a new run.json.
            removed = remove_results(run_dir)
            if removed:
                warnings.warn(
                    f"{run_dir} held an earlier run; replaced its {', '.join(removed)}",
                    UserWarning,
                    stacklevel=3,
                )
        if claim is not None:
            claim.commit()
        write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
        record = run_record(recipe, data_path, labels_path, run_id)
        write_json(run_dir / RUN_FILE, {**record, START_RECORD: start} if start else record)

    module = ISaeRFTLightningModule(
        wrapped,
        recipe.objective,
        recipe.optim,
        max_steps,
        boundary=boundary,
        check_tag=tag,
        log_every_n_steps=cfg.log_every_n_steps,
    )
    pad_id = _pad_id(model)
    datamodule = ISaeRFTDataModule(
        train_data,
        recipe.data.batch_size,
        cfg.seed,
        max_steps * accumulate,
        pad_id,
        kl=kl_data,
        kl_batch_size=recipe.objective.kl_data.batch_size if recipe.objective.kl_data else None,
        caches=caches,
        kl_caches=kl_caches,
    )
    labels = read_latent_labels(labels_path) if labels_path else None
    resume_step = checkpoint_step(checkpoint) if resuming else None
    if resume_step is not None and is_zero:
        print(f"resuming the interrupted run in {run_dir} from step {resume_step}", flush=True)
    loggers, attempt_dir = make_loggers(
        run_dir, cfg.logger, cfg.checkpoint_every_n_steps, resume_step
    )
    with quiet_lightning():
        trainer = make_trainer(recipe, run_dir, max_steps, [*callbacks], labels, loggers)
        fit_started = time.perf_counter()
        try:
            trainer.fit(
                module,
                datamodule=datamodule,
                ckpt_path=str(checkpoint) if resuming else None,
                weights_only=True,
            )
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1); callers get the interrupt back.
            if trainer.interrupted:
                signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
                raise KeyboardInterrupt from None
            raise
    fit_seconds = time.perf_counter() - fit_started
    # Lightning's teardown left the module on the CPU: give the model back where it trained.
    resolve.place(model, saes, device)

    top = top_moved_latents(wrapped, cfg.top_k, labels)
    blowup = module.loss_blowup()
    if blowup is not None and is_zero:
        warnings.warn(blowup, TrainingWarning, stacklevel=3)
    summary: dict[str, Any] = {
        "steps": int(trainer.global_step),
        "max_steps": max_steps,
        "rows": len(train_data),
        "data_epochs": max_steps * accumulate * recipe.data.batch_size / len(train_data),
        "resumed_from_step": resume_step,
        "initial_loss": module.loss_start,
        "final": {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")
        },
        "warnings": [blowup] if blowup is not None else [],
        "moved_latents": wrapped.num_moved_latents(recipe.objective.moved_tolerance),
        "moved_tolerance": recipe.objective.moved_tolerance,
        "trainable_parameters": wrapped.num_trainable_parameters(),
        "wall_time_s": time.perf_counter() - started,
        "setup_time_s": fit_started - started,
        "fit_time_s": fit_seconds,
        "tokens": module.tokens_seen,
        "tokens_per_s": module.tokens_seen / fit_seconds if fit_seconds > 0 else 0.0,
        "prefix_cache": cfg.prefix_cache,
        "torch_threads": torch.get_num_threads(),
        "world_size": trainer.world_size,
        "top_latents": [m.to_dict() for m in top],
    }
    if trainer.is_global_zero:
        saved = wrapped.save_pretrained(run_dir / INTERVENTION_DIR)
        if attempt_dir is not None:
            merge_metrics(run_dir / LOGS_DIR, run_dir / METRICS_FILE)
        # Written last, binding the run id and these very weights: the mark of a finished run.
        summary[RUN_ID] = run_id
        summary[WEIGHTS_HASH] = sha256_file(saved / WEIGHTS_FILE)
        write_json(run_dir / SUMMARY_FILE, summary)
    return RunResult(run_dir, wrapped, summary, top)


# --- helpers ---------------------------------------------------------------------------------


def _tokenize(config: DataConfig, path: str, objective: str, model: LanguageModel) -> TokenizedData:
    rows = load_rows(config, path)
    return tokenize(
        rows,
        config,
        objective=objective,
        tokenizer=model.tokenizer,
        n_ctx=model.cfg.n_ctx,
        prepend_bos=model.cfg.default_prepend_bos,
        source=path,
    )


def _caches(
    store: PrefixCacheStore, model: ISaeRFTModel, data: TokenizedData | None, batch_size: int
) -> dict[str, PrefixCache]:
    assert data is not None
    return {
        name: store.get(model, stream.ids, batch_size=batch_size)
        for name, stream in data.streams.items()
    }


def _pad_id(model: LanguageModel) -> int:
    tok = model.tokenizer
    for candidate in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0
