"""``train(recipe) -> RunResult`` and ``load_run(run_dir)``: writing and reading run folders.

The run folder's layout, and when a folder may be written as one, live in :mod:`isaerft.runs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
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
    CHECKPOINTS_DIR,
    DATA_DIR,
    INTERVENTION_DIR,
    LAST_CHECKPOINT,
    LOGS_DIR,
    METRICS_FILE,
    ORGANISMS,
    RECIPE_FILE,
    RUN_FILE,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    RUN_ID,
    START_RECORD,
    SUMMARY_FILE,
    TOP_LATENTS_FILE,
    WEIGHTS_HASH,
    RunClaim,
    check_finished,
    locked_run_dir,
    new_run_id,
    read_run_record,
    read_summary,
    remove_results,
)
from isaerft.specs import (
    OrganismBuildError,
    organism_size,
    resolve_data_spec,
    resolve_labels_spec,
    resolve_model_spec,
    resolve_sae_spec,
    unpin_spec,
)
from isaerft.threads import resolve_threads, torch_threads
from isaerft.training import resolve
from isaerft.training.callbacks import (
    MovedLatent,
    TopLatentsLogger,
    read_latent_labels,
    top_moved_latents,
)
from isaerft.training.data import TokenizedData, load_rows, tokenize
from isaerft.training.datamodule import ISaeRFTDataModule
from isaerft.training.logs import make_loggers, merge_metrics, quiet_lightning
from isaerft.training.module import ISaeRFTLightningModule, TrainingWarning
from isaerft.training.prefix_cache import PrefixCache, PrefixCacheStore, find_boundary
from isaerft.training.recipe import DataConfig, TrainRecipe
from isaerft.training.start import start_from

__all__ = [
    "INTERVENTION_DIR",
    "LAST_CHECKPOINT",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "RunInfo",
    "RunResult",
    "load_run",
    "read_run_info",
    "train",
]


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


@dataclass
class RunInfo:
    """What a finished (or interrupted) run was: enough to reload or repeat it."""

    run_dir: Path
    recipe: TrainRecipe
    model_spec: str
    sae_specs: list[str]
    data_path: str | None
    seed: int
    labels_path: str | None
    summary: dict[str, Any] | None
    organisms: dict[str, str] = dataclasses.field(default_factory=dict)
    """``{size: cache key}`` of the organism builds the run was trained on; ``recipe`` names
    them pinned (``organism:tiny@<build>``), so reloading never picks up a rebuilt organism."""


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
    run_id = _resumed_run_id(run_dir) if resuming else None
    run_id = run_id or new_run_id()
    if resuming:
        _check_resumed_organisms(run_dir, recipe)
    pl.seed_everything(cfg.seed, verbose=False)
    device = resolve.torch_device(cfg.accelerator)
    if model is None:
        model = resolve.load_recipe_model(recipe, device)
    if saes is None:
        saes = resolve.load_recipe_saes(recipe, device)
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

    tag = _check_tag(recipe, train_data)
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
        record = _run_record(recipe, data_path, labels_path, run_id)
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
    resume_step = _checkpoint_step(checkpoint) if resuming else None
    if resume_step is not None and is_zero:
        print(f"resuming the interrupted run in {run_dir} from step {resume_step}", flush=True)
    loggers, attempt_dir = make_loggers(
        run_dir, cfg.logger, cfg.checkpoint_every_n_steps, resume_step
    )
    with quiet_lightning():
        trainer = _make_trainer(recipe, run_dir, max_steps, [*callbacks], labels, loggers)
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


def load_run(
    run_dir: str | Path,
    *,
    model: LanguageModel | None = None,
    saes: Sequence[SAE[Any]] | None = None,
    device: str | None = None,
) -> tuple[ISaeRFTModel, RunInfo]:
    """Reload a finished run's trained model and what it was trained on.

    ``model``/``saes`` reuse already-loaded objects (they must be the ones the run used; the
    SAEs are checked by fingerprint); otherwise they are loaded from the run's specs.

    Raises:
        isaerft.runs.RunFolderError: the run is unfinished, or its ``intervention/`` is not
            the one this training saved (checked before any model is loaded).
        isaerft.specs.OrganismBuildError: the run was trained on a build of the model
            organism that is no longer available (it is never loaded on another build).
    """
    info = read_run_info(run_dir)
    check_finished(info.run_dir)
    recipe = info.recipe
    device = device or ("cpu" if model is None else str(next(model.parameters()).device))
    try:
        if model is None:
            model = resolve.load_recipe_model(recipe, device)
        if saes is None:
            saes = resolve.load_recipe_saes(recipe, device)
    except OrganismBuildError as err:
        raise OrganismBuildError(f"cannot load run {info.run_dir}: {err}") from err
    wrapped = ISaeRFTModel.from_pretrained(model, list(saes), info.run_dir / INTERVENTION_DIR)
    return wrapped, info


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read ``run.json`` (and ``summary.json`` when the run finished) without loading models.

    The recipe's ``organism:<size>`` specs come back pinned to the organism builds the run was
    trained on (``organism:<size>@<build>``, see :attr:`RunInfo.organisms`).
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    organisms = _recorded_organisms(record)
    return RunInfo(
        run_dir=run_dir,
        recipe=resolve.pin_organisms(TrainRecipe.from_dict(record["recipe"]), organisms),
        model_spec=record["model"],
        sae_specs=list(record["sae"]),
        data_path=record["data_path"],
        seed=int(record["seed"]),
        labels_path=record["labels_path"],
        summary=read_summary(run_dir),
        organisms=organisms,
    )


def _recorded_organisms(record: dict[str, Any]) -> dict[str, str]:
    """The organism builds of a run record: its ``organisms``, or for a run recorded before
    those were, the organism cache folders its ``model_path``/``sae_paths`` point into."""
    keys = record.get(ORGANISMS)
    if isinstance(keys, dict):
        return {str(size): str(key) for size, key in keys.items()}
    found: dict[str, str] = {}
    specs = [record.get("model"), *(record.get("sae") or [])]
    paths = [record.get("model_path"), *(record.get("sae_paths") or [])]
    for spec, path in zip(specs, paths):
        size = organism_size(spec) if isinstance(spec, str) else None
        if size and isinstance(path, str):
            folder = Path(path).parent.name  # <cache>/organisms/<size>-<build>/model
            if re.fullmatch(rf"{re.escape(size)}-[0-9a-f]{{12}}", folder):
                found[size] = folder
    return found


# --- helpers ---------------------------------------------------------------------------------


def _make_trainer(
    recipe: TrainRecipe,
    run_dir: Path,
    max_steps: int,
    callbacks: list[pl.Callback],
    labels: dict[int, str] | None,
    loggers: list[Any],
) -> pl.Trainer:
    cfg = recipe.trainer
    if cfg.top_latents_every_n_steps:
        callbacks.append(
            TopLatentsLogger(
                run_dir / TOP_LATENTS_FILE,
                cfg.top_latents_every_n_steps,
                cfg.top_k,
                labels,
                verbose=cfg.progress_bar,
            )
        )
    if cfg.checkpoint_every_n_steps:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(
                dirpath=run_dir / CHECKPOINTS_DIR,
                filename="step-{step:06d}",
                every_n_train_steps=cfg.checkpoint_every_n_steps,
                save_top_k=1,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,  # type: ignore[arg-type]
        max_epochs=1,
        max_steps=max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=recipe.optim.grad_clip,
        log_every_n_steps=cfg.log_every_n_steps,
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=bool(cfg.checkpoint_every_n_steps),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
    )


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


def _check_tag(recipe: TrainRecipe, data: TokenizedData) -> str:
    """Identifies what determines the trained result, so a resume on anything else fails."""
    record = recipe.to_dict()
    trainer = record.pop("trainer")
    record["trainer"] = {
        k: trainer[k] for k in ("max_steps", "epochs", "accumulate_grad_batches", "seed")
    }
    # optim may change on resume (lower lr, set grad_clip): the module re-applies it.
    for key in ("name", "output_dir", "labels", "optim"):
        record.pop(key)
    # Which organism build a spec resolves to is checked on its own (_check_resumed_organisms),
    # so an interrupted run may be resumed with its build pinned (organism:tiny@<build>).
    record["model"] = unpin_spec(record["model"])
    record["sae"] = [unpin_spec(spec) for spec in record["sae"]]
    record["data_fingerprint"] = data.fingerprint()
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _check_resumed_organisms(run_dir: Path, recipe: TrainRecipe) -> None:
    """Refuse to resume a run on another organism build than the one it started on."""
    try:
        recorded = _recorded_organisms(read_run_record(run_dir))
    except (OSError, ValueError):
        return  # no readable record: the checkpoint's own checks decide
    current = resolve.organism_keys(recipe)
    for size, key in sorted(recorded.items()):
        now = current.get(size)
        if now is not None and now != key:
            raise OrganismBuildError(
                f"{run_dir} is an interrupted run trained on organism build {key}, but "
                f"organism:{size} is now build {now}: resuming would continue it on another "
                f"model; resume it on its own build with model/sae organism:{size}@"
                f"{key.removeprefix(size + '-')} (while that build is in the organism cache), "
                "or train afresh with trainer.resume=never"
            )


def _run_record(
    recipe: TrainRecipe, data_path: str, labels: Path | None, run_id: str
) -> dict[str, Any]:
    from isaerft import __version__

    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "isaerft_version": __version__,
        RUN_ID: run_id,
        "model": recipe.model,
        "model_path": resolve_model_spec(recipe.model),
        "sae": list(recipe.sae),
        "sae_paths": [resolve_sae_spec(s) for s in recipe.sae],
        "model_dtype": recipe.model_dtype,
        "data": dataclasses.asdict(recipe.data),
        "data_path": data_path,
        "seed": recipe.trainer.seed,
        "labels_path": str(labels) if labels else None,
        ORGANISMS: resolve.organism_keys(recipe),
        "intervention": INTERVENTION_DIR,
        "recipe": recipe.to_dict(),
    }


def _checkpoint_step(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state["global_step"])


def _resumed_run_id(run_dir: Path) -> str | None:
    """The id of the interrupted training being resumed (a new one if its record is unreadable)."""
    try:
        run_id = read_run_record(run_dir).get(RUN_ID)
    except (OSError, ValueError):
        return None
    return str(run_id) if run_id else None
