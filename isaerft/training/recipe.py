"""``TrainRecipe``: a typed, validated tree of everything a training run needs.

A recipe is written as YAML (see ``isaerft/recipes/``) with the sections ``model``, ``sae``,
``intervention``, ``data``, ``objective``, ``optim`` and ``trainer``. Every section is a
:class:`~isaerft.configbase.ConfigBase`: types (finite numbers, real booleans) are checked
from the annotations, ranges in ``validate``; unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from isaerft.components import component_kinds
from isaerft.config import ISaeRFTConfig
from isaerft.configbase import (
    ConfigBase,
    ConfigError,
    build_config,
    check_choice,
    check_number,
    load_yaml,
)
from isaerft.rows.render import DEFAULT_FIELDS
from isaerft.training._dataclass_tree import apply_overrides
from isaerft.training.sparsity import L1_UPDATES

__all__ = [
    "apply_overrides"
]  # re-exported: ``from isaerft.training.recipe import apply_overrides``

DATA_FORMATS = ("auto", "text", "prompt_completion", "chat", "preference")
OBJECTIVES = ("lm", "sft", "dpo", "reps")
PREFERENCE_OBJECTIVES = ("dpo", "reps")
"""The objectives trained on preference rows (prompt, chosen, rejected)."""
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "linear", "cosine")
LOGGERS = ("csv", "tensorboard", "none")
RESUME_MODES = ("auto", "never")
ORGANISM_DATASET_KINDS = ("clean", "poison", "decoy", "benign-shift")
MODEL_DTYPES = ("float32", "float16", "bfloat16")
MODEL_BACKENDS = ("hooked", "bridge")


class _Section(ConfigBase):
    """A recipe section: messages read ``recipe <section>.<field>=<value> is invalid: ...``."""

    def positive(self, name: str, *, allow_zero: bool = False) -> None:
        value = getattr(self, name)
        check_number(self.where(name), value, minimum=0, exclusive_minimum=not allow_zero)

    def integer(self, name: str, minimum: int) -> None:
        check_number(self.where(name), getattr(self, name), minimum=minimum, integer=True)

    def choice(self, name: str, allowed: tuple[str, ...]) -> None:
        check_choice(self.where(name), getattr(self, name), allowed)


@dataclass
class OrganismDatasetSpec(_Section):
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

    config_name: ClassVar[str] = "recipe data.organism_dataset"

    def validate(self) -> None:
        """Ranges and choices (types are checked by the config base)."""
        self.choice("kind", ORGANISM_DATASET_KINDS)
        self.integer("n", 1)
        if self.fraction is not None:
            check_number(self.where("fraction"), self.fraction, minimum=0, maximum=1)


@dataclass
class DataConfig(_Section):
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
    # The column names' defaults have one home, the row pipeline's.
    text_field: str = DEFAULT_FIELDS.text_field
    prompt_field: str = DEFAULT_FIELDS.prompt_field
    completion_field: str = DEFAULT_FIELDS.completion_field
    messages_field: str = DEFAULT_FIELDS.messages_field
    chosen_field: str = DEFAULT_FIELDS.chosen_field
    rejected_field: str = DEFAULT_FIELDS.rejected_field
    max_length: int | None = None
    packing: bool = False
    append_eos: bool = True
    batch_size: int = 8
    limit: int | None = None

    config_name: ClassVar[str] = "recipe data"

    def validate(self) -> None:
        """Ranges and choices (types are checked by the config base)."""
        if (self.path is None) == (self.organism_dataset is None):
            raise ValueError(
                "recipe data needs exactly one of data.path (a file or hub dataset name) and "
                "data.organism_dataset (e.g. {kind: poison, n: 512})"
            )
        self.choice("format", DATA_FORMATS)
        self.integer("batch_size", 1)
        if self.max_length is not None:
            self.integer("max_length", 2)
        if self.limit is not None:
            self.integer("limit", 1)


@dataclass
class ObjectiveConfig(_Section):
    """The training loss and the regularisers added to it.

    Attributes:
        kind: ``lm`` (next-token loss on every token), ``sft`` (loss on completion tokens
            only), ``dpo`` (preference pairs; the reference is the base model) or ``reps``
            (preference pairs, reference-free and bidirectional in the style of RePS/SimPO:
            see :mod:`isaerft.training.preference`).
        dpo_beta: DPO temperature.
        reps_beta: ``reps`` scale of the length-normalised log-likelihood difference.
        reps_gamma: ``reps`` target margin (SimPO's ``gamma``).
        reps_bidirectional: ``reps`` also trains the edit applied with factor ``-1`` to prefer
            the rejected response (suppression); ``false`` is the one-directional SimPO loss.
        kl_coefficient: weight of the KL divergence to the base model on ``kl_data``.
        kl_data: general data for the KL regulariser (required when ``kl_coefficient > 0``).
        moved_tolerance: a latent counts as moved when its edit magnitude exceeds this.

    The L1 penalty on the deviation from identity is ``intervention.l1_coefficient``.
    """

    kind: str = "sft"
    dpo_beta: float = 0.1
    reps_beta: float = 2.0
    reps_gamma: float = 0.5
    reps_bidirectional: bool = True
    kl_coefficient: float = 0.0
    kl_data: DataConfig | None = None
    moved_tolerance: float = 1e-3

    config_name: ClassVar[str] = "recipe objective"

    def validate(self) -> None:
        """Ranges and choices (types are checked by the config base)."""
        self.choice("kind", OBJECTIVES)
        self.positive("dpo_beta")
        self.positive("reps_beta")
        self.positive("reps_gamma", allow_zero=True)
        self.positive("kl_coefficient", allow_zero=True)
        self.positive("moved_tolerance", allow_zero=True)
        if self.kl_coefficient > 0 and self.kl_data is None:
            raise ValueError(
                "recipe objective.kl_coefficient > 0 needs objective.kl_data (general text to "
                "stay close to the base model on)"
            )


@dataclass
class OptimConfig(_Section):
    """Optimizer and learning-rate schedule for the component parameters.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: peak learning rate.
        weight_decay: decoupled weight decay (``adamw``) or L2 (``adam``/``sgd``).
        betas: Adam betas.
        scheduler: ``constant``, ``linear`` (decay to 0) or ``cosine`` (decay to 0).
        warmup_steps: linear warm-up steps before the schedule.
        grad_clip: clip the gradient norm to this value; ``None`` disables clipping.
        l1_update: how ``intervention.l1_coefficient`` acts: ``gradient`` (a loss term) or
            ``proximal`` (an exact soft-threshold after each step, so latents the data does not
            move stay exactly unchanged; ``scale``, ``bias`` and ``scale_bias`` only; see
            :mod:`isaerft.training.sparsity`).
    """

    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    l1_update: str = "gradient"

    config_name: ClassVar[str] = "recipe optim"

    def validate(self) -> None:
        """Ranges and choices (types are checked by the config base)."""
        self.choice("optimizer", OPTIMIZERS)
        self.choice("scheduler", SCHEDULERS)
        self.choice("l1_update", L1_UPDATES)
        self.positive("lr")
        self.positive("weight_decay", allow_zero=True)
        self.integer("warmup_steps", 0)
        if self.grad_clip is not None:
            self.positive("grad_clip")
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(
                f"{self.where('betas')}={self.betas} is invalid: give two numbers in [0, 1)"
            )


@dataclass
class TrainerConfig(_Section):
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
        threads: torch threads while training (an integer >= 1); ``None`` uses
            ``OMP_NUM_THREADS`` when set, else the library's default ``min(2, cores - 1)``. The
            environment variable ``ISAERFT_THREADS`` overrides it (see :mod:`isaerft.threads`).
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
    threads: int | None = None

    config_name: ClassVar[str] = "recipe trainer"

    def validate(self) -> None:
        """Ranges and choices (types are checked by the config base)."""
        if self.max_steps is not None:
            self.integer("max_steps", 1)
        self.positive("epochs")
        self.integer("accumulate_grad_batches", 1)
        self.integer("seed", 0)
        self.integer("num_nodes", 1)
        self.integer("log_every_n_steps", 1)
        self.integer("checkpoint_every_n_steps", 0)
        self.integer("top_latents_every_n_steps", 0)
        self.integer("top_k", 1)
        self.choice("logger", LOGGERS)
        self.choice("resume", RESUME_MODES)
        if self.threads is not None:
            self.integer("threads", 1)
        if isinstance(self.devices, int) and self.devices < 1:
            raise ConfigError(
                f"{self.where('devices')}={self.devices} is invalid: use >= 1 or 'auto'"
            )


@dataclass
class TrainRecipe(_Section):
    """A complete training run: what to load, what to train, on what, and how.

    Attributes:
        model: ``organism:tiny``/``organism:small``, a local folder written by
            :func:`isaerft.save_model`, or a TransformerLens model name (needs network); with
            ``model_backend: bridge``, a Hugging Face hub name or checkpoint folder.
        model_backend: ``hooked`` loads a ``HookedTransformer``; ``bridge`` loads a
            TransformerLens 3 ``TransformerBridge`` around the Hugging Face model (Gemma 3,
            Qwen 3, ...; see :mod:`isaerft.backends`), which cannot use
            ``trainer.prefix_cache``.
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
        start_from: a finished run folder (or saved intervention) of the same component kind,
            hooks and SAEs to start from; the L1 then penalises the distance from it, so the
            run learns a sparse delta on top of it (differential training, see
            :mod:`isaerft.training.start`).
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
    model_backend: str = "hooked"
    name: str = "run"
    output_dir: str = "runs/{name}"
    start_from: str | None = None

    config_name: ClassVar[str] = "recipe"

    def __post_init__(self) -> None:
        if isinstance(self.sae, str):
            self.sae = [self.sae]
        super().__post_init__()

    def validate(self) -> None:
        """Specs, dtype, and settings that only fail in combination."""
        if not self.model:
            raise ConfigError("recipe model is empty: give a model spec (e.g. organism:small)")
        if not self.sae or not all(self.sae):
            raise ConfigError(f"recipe sae={self.sae!r} is invalid: give one or more SAE specs")
        self.choice("model_dtype", MODEL_DTYPES)
        self.choice("model_backend", MODEL_BACKENDS)
        if self.model_backend == "bridge" and self.trainer.prefix_cache:
            raise ConfigError(
                "recipe trainer.prefix_cache=true cannot be used with model_backend=bridge: a "
                "TransformerBridge cannot start at a layer; set trainer.prefix_cache=false"
            )
        kind = self.objective.kind
        if kind in PREFERENCE_OBJECTIVES and self.data.packing:
            raise ConfigError(f"recipe data.packing=true cannot be used with objective.kind={kind}")
        if kind in PREFERENCE_OBJECTIVES and self.data.format not in ("auto", "preference"):
            raise ConfigError(
                f"recipe objective.kind={kind} needs preference rows, but data.format="
                f"{self.data.format!r}; use data.format=preference (or auto)"
            )
        if self.optim.l1_update == "proximal":
            self._check_proximal()
        if self.intervention.dtype == "float16" and self.optim.optimizer != "sgd":
            # Adam divides by sqrt(v) + eps; in float16 eps=1e-8 rounds to 0 and squared
            # gradients underflow to 0, so the first update is 0/0: NaN whatever the lr.
            raise ConfigError(
                f"recipe intervention.dtype=float16 cannot train with optim.optimizer="
                f"{self.optim.optimizer}: Adam's eps (1e-8) and squared gradients underflow to 0 "
                "in float16, so its updates are NaN; use intervention.dtype=float32 (or bfloat16) "
                "and keep model_dtype=float16 for the frozen model, or optim.optimizer=sgd"
            )

    def _check_proximal(self) -> None:
        """A proximal L1 update needs a penalty to apply and a kind whose penalty it can apply."""
        component = self.intervention.component
        if not component_kinds()[component].parameter_l1:
            raise ConfigError(
                f"recipe optim.l1_update=proximal cannot train component={component!r}: its L1 "
                "penalty depends on the input; use optim.l1_update=gradient, or a scale, bias "
                "or scale_bias component"
            )
        if self.intervention.l1_coefficient == 0:
            raise ConfigError(
                "recipe optim.l1_update=proximal does nothing with intervention.l1_coefficient=0;"
                " set a coefficient (e.g. 1e-3) or use optim.l1_update=gradient"
            )

    @property
    def run_dir(self) -> Path:
        """The run directory, with ``{name}`` filled in."""
        return Path(self.output_dir.replace("{name}", self.name))

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> TrainRecipe:
        """Build and validate a recipe; unknown keys fail with the list of valid keys."""
        return build_config(cls, data, where or "recipe")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainRecipe:
        """Read a YAML recipe and apply ``key.sub=value`` overrides (values parsed as YAML)."""
        data = load_yaml(path, "recipe file")
        if not isinstance(data, dict):
            raise ConfigError(f"recipe {path} must be a YAML mapping, got {type(data).__name__}")
        return cls.from_dict(apply_overrides(data, overrides or []))


def recipe_dirs() -> list[Path]:
    """Where shipped recipes are looked up by name: ``./recipes``, then those installed with
    the package (``isaerft/recipes``, also in a wheel)."""
    return [Path.cwd() / "recipes", Path(__file__).resolve().parents[1] / "recipes"]


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
