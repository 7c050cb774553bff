"""``TrainRecipe``: a typed, validated tree of everything a training run needs.

A recipe is written as YAML (see ``recipes/``) with the sections ``model``, ``sae``,
``intervention``, ``data``, ``objective``, ``optim`` and ``trainer``. Every section is a
dataclass validated in ``__post_init__``; unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isaerft.config import ISaeRFTConfig
from isaerft.training._dataclass_tree import apply_overrides, build_dataclass

ORGANISM_PREFIX = "organism:"
DATA_FORMATS = ("auto", "text", "prompt_completion", "chat", "preference")
OBJECTIVES = ("lm", "sft", "dpo")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "linear", "cosine")
LOGGERS = ("csv", "tensorboard", "none")
RESUME_MODES = ("auto", "never")
ORGANISM_DATASET_KINDS = ("clean", "poison", "decoy", "benign-shift")


def _fail(section: str, name: str, value: object, expected: str) -> ValueError:
    return ValueError(f"recipe {section}.{name}={value!r} is invalid: {expected}")


def _check_choice(section: str, name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _fail(section, name, value, f"use one of {list(allowed)}")


def _check_positive(section: str, name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        raise _fail(section, name, value, "must be a number " + (">= 0" if allow_zero else "> 0"))


def _check_int(section: str, name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(section, name, value, f"must be an integer >= {minimum}")


@dataclass
class OrganismDatasetSpec:
    """A dataset generated on the fly by ``isaerft.organism.make_dataset``.

    Attributes:
        kind: one of ``clean``, ``poison``, ``decoy``, ``benign-shift``.
        n: number of rows.
        fraction: fraction of poisoned (or shifted) rows, where the kind has one.
        trigger: the planted trigger word; ``None`` uses the organism's default.
        target: the planted target behaviour; ``None`` uses the organism's default.
        seed: generation seed.
        organism: organism size (``tiny``/``small``); ``None`` uses the recipe's model organism.
    """

    kind: str = "poison"
    n: int = 512
    fraction: float | None = None
    trigger: str | None = None
    target: str | None = None
    seed: int = 0
    organism: str | None = None

    def __post_init__(self) -> None:
        _check_choice("data.organism_dataset", "kind", self.kind, ORGANISM_DATASET_KINDS)
        _check_int("data.organism_dataset", "n", self.n, 1)
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise _fail("data.organism_dataset", "fraction", self.fraction, "must be in [0, 1]")


@dataclass
class DataConfig:
    """Where the rows come from and how they become token batches.

    Exactly one of ``path`` (a local ``.jsonl/.json/.csv/.parquet/.txt`` file, or a Hugging
    Face hub dataset name for users with network) and ``organism_dataset`` is set.

    Attributes:
        path: local file or hub dataset name.
        organism_dataset: generate an organism dataset into the run directory instead.
        split: split to read from a hub dataset.
        format: ``auto`` (detected from the columns), ``text``, ``prompt_completion``,
            ``chat`` (a list of ``{"role", "content"}`` messages) or ``preference``
            (prompt, chosen, rejected).
        text_field, prompt_field, completion_field, messages_field, chosen_field,
            rejected_field: column names for each format.
        max_length: tokens per row (default: the model's ``n_ctx``); longer rows are
            truncated with a warning.
        packing: concatenate rows into blocks of ``max_length`` tokens instead of padding.
        append_eos: end every completion (and text row) with the tokenizer's EOS token.
        batch_size: rows per optimizer micro-step, summed over all devices (global).
        limit: use only the first ``limit`` rows.
    """

    path: str | None = None
    organism_dataset: OrganismDatasetSpec | None = None
    split: str = "train"
    format: str = "auto"
    text_field: str = "text"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str = "messages"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    max_length: int | None = None
    packing: bool = False
    append_eos: bool = True
    batch_size: int = 8
    limit: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.organism_dataset is None):
            raise ValueError(
                "recipe data needs exactly one of data.path (a file or hub dataset name) and "
                "data.organism_dataset (e.g. {kind: poison, n: 512})"
            )
        _check_choice("data", "format", self.format, DATA_FORMATS)
        _check_int("data", "batch_size", self.batch_size, 1)
        if self.max_length is not None:
            _check_int("data", "max_length", self.max_length, 2)
        if self.limit is not None:
            _check_int("data", "limit", self.limit, 1)


@dataclass
class ObjectiveConfig:
    """The training loss and the regularisers added to it.

    Attributes:
        kind: ``lm`` (next-token loss on every token), ``sft`` (loss on completion tokens
            only) or ``dpo`` (preference pairs; the reference is the base model).
        dpo_beta: DPO temperature.
        kl_coefficient: weight of the KL divergence to the base model on ``kl_data``.
        kl_data: general data for the KL regulariser (required when ``kl_coefficient > 0``).
        moved_tolerance: a latent counts as moved when its edit magnitude exceeds this.

    The L1 penalty on the deviation from identity is ``intervention.l1_coefficient``.
    """

    kind: str = "sft"
    dpo_beta: float = 0.1
    kl_coefficient: float = 0.0
    kl_data: DataConfig | None = None
    moved_tolerance: float = 1e-3

    def __post_init__(self) -> None:
        _check_choice("objective", "kind", self.kind, OBJECTIVES)
        _check_positive("objective", "dpo_beta", self.dpo_beta)
        _check_positive("objective", "kl_coefficient", self.kl_coefficient, allow_zero=True)
        _check_positive("objective", "moved_tolerance", self.moved_tolerance, allow_zero=True)
        if self.kl_coefficient > 0 and self.kl_data is None:
            raise ValueError(
                "recipe objective.kl_coefficient > 0 needs objective.kl_data (general text to "
                "stay close to the base model on)"
            )


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule for the component parameters.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: decoupled weight decay (``adamw``) or L2 (``adam``/``sgd``).
        betas: Adam betas.
        scheduler: ``constant``, ``linear`` (decay to 0) or ``cosine`` (decay to 0).
        warmup_steps: linear warm-up steps before the schedule.
        grad_clip: clip the gradient norm to this value; ``None`` disables clipping.
    """

    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        _check_choice("optim", "optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("optim", "scheduler", self.scheduler, SCHEDULERS)
        _check_positive("optim", "lr", self.lr)
        _check_positive("optim", "weight_decay", self.weight_decay, allow_zero=True)
        _check_int("optim", "warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            _check_positive("optim", "grad_clip", self.grad_clip)
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise _fail("optim", "betas", self.betas, "must be two numbers in [0, 1)")


@dataclass
class TrainerConfig:
    """How long and where to train, what to log and how to checkpoint.

    Attributes:
        max_steps: optimizer steps; if ``None``, ``epochs`` passes over the data.
        epochs: passes over the data when ``max_steps`` is ``None``.
        accumulate_grad_batches: micro-batches per optimizer step.
        seed: seeds the data order (a function of seed and data epoch) and initialisation.
        accelerator, devices, num_nodes, strategy, precision: passed to ``lightning.Trainer``.
        log_every_n_steps: how often losses are written to the metrics file.
        checkpoint_every_n_steps: how often a resumable checkpoint is written (0: never).
        logger: ``csv`` (default), ``tensorboard`` or ``none``.
        top_latents_every_n_steps: how often the top moved latents are logged (0: never).
        top_k: how many latents that log shows.
        progress_bar: show Lightning's progress bar.
        prefix_cache: cache the activations before the first spliced hook and run only the
            downstream layers (see :class:`isaerft.training.PrefixCache`).
        prefix_cache_dir: where cached prefixes persist across runs (``None``: memory only).
        resume: ``auto`` resumes an interrupted run from ``RUN/checkpoints/last.ckpt`` (a
            finished run, one with ``summary.json``, is trained afresh); ``never`` starts over.
    """

    max_steps: int | None = None
    epochs: float = 1.0
    accumulate_grad_batches: int = 1
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 50
    logger: str = "csv"
    top_latents_every_n_steps: int = 0
    top_k: int = 10
    progress_bar: bool = True
    prefix_cache: bool = False
    prefix_cache_dir: str | None = None
    resume: str = "auto"

    def __post_init__(self) -> None:
        if self.max_steps is not None:
            _check_int("trainer", "max_steps", self.max_steps, 1)
        _check_positive("trainer", "epochs", self.epochs)
        _check_int("trainer", "accumulate_grad_batches", self.accumulate_grad_batches, 1)
        _check_int("trainer", "seed", self.seed, 0)
        _check_int("trainer", "num_nodes", self.num_nodes, 1)
        _check_int("trainer", "log_every_n_steps", self.log_every_n_steps, 1)
        _check_int("trainer", "checkpoint_every_n_steps", self.checkpoint_every_n_steps, 0)
        _check_int("trainer", "top_latents_every_n_steps", self.top_latents_every_n_steps, 0)
        _check_int("trainer", "top_k", self.top_k, 1)
        _check_choice("trainer", "logger", self.logger, LOGGERS)
        _check_choice("trainer", "resume", self.resume, RESUME_MODES)
        if isinstance(self.devices, int) and self.devices < 1:
            raise _fail("trainer", "devices", self.devices, "must be >= 1 or 'auto'")


@dataclass
class TrainRecipe:
    """A complete training run: what to load, what to train, on what, and how.

    Attributes:
        model: ``organism:tiny``/``organism:small``, a local folder written by
            :func:`isaerft.save_model`, or a TransformerLens model name (needs network).
        sae: one SAE spec or a list: ``organism:<size>``, a SAELens folder, or
            ``release::sae_id`` (needs network).
        data: the training data.
        intervention: the :class:`~isaerft.ISaeRFTConfig` (component, L1 coefficient, ...).
        objective: loss and regularisers.
        optim: optimizer and schedule.
        trainer: steps, devices, logging, checkpointing.
        labels: latent labels (Neuronpedia-style JSONL) for the top-latent log; ``None``
            uses the organism's labels when the SAE is an organism's.
        model_dtype: dtype the frozen model and SAEs are loaded in.
        name: run name (used in the default output directory).
        output_dir: the run directory; ``{name}`` is replaced by ``name``.
    """

    model: str
    sae: list[str]
    data: DataConfig
    intervention: ISaeRFTConfig = field(default_factory=ISaeRFTConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    labels: str | None = None
    model_dtype: str = "float32"
    name: str = "run"
    output_dir: str = "runs/{name}"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise _fail("", "model", self.model, "must be a model spec string")
        if isinstance(self.sae, str):
            self.sae = [self.sae]
        if not self.sae or not all(isinstance(s, str) and s for s in self.sae):
            raise _fail("", "sae", self.sae, "must be an SAE spec or a non-empty list of them")
        _check_choice("", "model_dtype", self.model_dtype, ("float32", "float16", "bfloat16"))
        if self.objective.kind == "dpo" and self.data.packing:
            raise ValueError("recipe data.packing=true cannot be used with objective.kind=dpo")
        if self.objective.kind == "dpo" and self.data.format not in ("auto", "preference"):
            raise ValueError(
                f"recipe objective.kind=dpo needs preference rows, but data.format="
                f"{self.data.format!r}; use data.format=preference (or auto)"
            )

    @property
    def run_dir(self) -> Path:
        """The run directory, with ``{name}`` filled in."""
        return Path(self.output_dir.replace("{name}", self.name))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-serialisable) that :meth:`from_dict` turns back into a recipe."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The recipe as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecipe:
        """Build and validate a recipe; unknown keys fail with the list of valid keys."""
        return build_dataclass(cls, data, "recipe")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainRecipe:
        """Read a YAML recipe and apply ``key.sub=value`` overrides (values parsed as YAML)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {path} not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"recipe {path} must be a YAML mapping, got {type(data).__name__}")
        return cls.from_dict(apply_overrides(data, overrides or []))


def recipe_dirs() -> list[Path]:
    """Where shipped recipes are looked up by name: ``./recipes`` then the source checkout's."""
    return [Path.cwd() / "recipes", Path(__file__).resolve().parents[2] / "recipes"]


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe (``organism-poison``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    for folder in recipe_dirs():
        candidate = folder / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise FileNotFoundError(f"recipe {name_or_path} not found; give a path or one of {known}")


def organism_size(spec: str) -> str | None:
    """``"organism:small"`` -> ``"small"``; any other spec -> ``None``."""
    return spec[len(ORGANISM_PREFIX) :] if spec.startswith(ORGANISM_PREFIX) else None
