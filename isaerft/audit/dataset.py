"""``audit_dataset``: audit a suspect dataset in one call — train the runs, then audit them.

It trains the *candidate* run on the suspect rows and ``n_reference_runs`` *reference* runs
on trusted rows with the very same recipe, number of optimizer steps and number of rows, each
with its own seed. Each reference run trains on its own subset of the trusted rows, as many
rows as the suspect set, so every run sees its data equally often (a run that repeats fewer
rows more often memorises them more, which the audit would otherwise read as a difference).
When the trusted set holds ``n_reference_runs`` times the suspect's rows, the subsets are
disjoint and the null covers the full noise of drawing a new dataset; with fewer rows they
overlap, the null is too narrow and a warning says so. All runs share the loaded model and
SAE and one prefix-cache store (the frozen layers before the SAE run once per dataset; a
``TransformerBridge`` cannot start at a layer, so on a bridge every run computes every layer).
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_lens import SAE

from isaerft._io import write_text
from isaerft.audit.config import AuditConfig
from isaerft.audit.data import read_rows
from isaerft.audit.pipeline import AuditResult, audit_runs
from isaerft.backends import LanguageModel, is_bridge
from isaerft.specs import IN_MEMORY_MODEL, IN_MEMORY_SAE, resolve_model_spec, resolve_sae_spec
from isaerft.threads import with_default_threads

if TYPE_CHECKING:
    from isaerft.training import RunResult, TrainRecipe

DEFAULT_RECIPE: dict[str, Any] = {
    "intervention": {"component": "scale", "l1_coefficient": 1e-4},
    "objective": {"kind": "sft"},
    "optim": {"optimizer": "adam", "lr": 1e-1},
    "data": {"batch_size": 16},
    "trainer": {"max_steps": 150},
}
"""Training settings used when no recipe is given. Tuned on the organism for the audit: the
candidate must actually learn what the data teaches, so the learning rate is higher and the
L1 penalty lighter than in ``recipes/organism-poison.yaml`` (whose strong L1 keeps the demo's
top-latent list short but leaves a 5 % poison mostly unlearned)."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _recipe_dict(recipe: Any) -> dict[str, Any]:
    from isaerft.training.recipe import TrainRecipe

    if recipe is None:
        return dict(DEFAULT_RECIPE)
    if isinstance(recipe, TrainRecipe):
        return recipe.to_dict()
    if isinstance(recipe, dict):
        return _merge(DEFAULT_RECIPE, recipe)
    import yaml

    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping")
    return loaded


def _run_recipe(run_dir: str | Path) -> dict[str, Any]:
    """The recipe a finished run was trained with (from its ``run.json``)."""
    from isaerft.runs import check_finished, read_run_record

    check_finished(run_dir)
    recipe = read_run_record(run_dir).get("recipe")
    if not isinstance(recipe, dict):
        raise ValueError(f"{run_dir}/run.json records no recipe; train the run again")
    # The references read their own rows; the candidate's data source must not carry over.
    return _merge(recipe, {"data": {"organism_dataset": None, "path": None}})


def _existing_candidate(
    run_dir: str | Path, suspect: str | Path, base: dict[str, Any]
) -> tuple[Path, Any, int]:
    """``(run dir, recipe, steps)`` of an existing candidate run, checked to have trained on
    ``suspect`` (else its edits would not be about the audited data)."""
    from isaerft.runs import read_run_record, read_summary
    from isaerft.training import TrainRecipe

    record = read_run_record(run_dir)
    trained_on = Path(str(record.get("data_path")))
    if not trained_on.is_file() or trained_on.resolve() != Path(suspect).resolve():
        raise ValueError(
            f"the candidate run {run_dir} trained on {trained_on}, not on the audited "
            f"{suspect}; audit the data the run trained on, or train a new candidate"
        )
    summary = read_summary(run_dir) or {}
    recipe = TrainRecipe.from_dict(_merge(base, {"data": {"path": str(suspect)}}))
    return Path(run_dir), recipe, int(summary["steps"])


def reference_subsets(
    n_reference: int, n_rows: int, n_runs: int, seed: int = 0
) -> tuple[list[list[int]], bool]:
    """Row indices of each reference run's subset and whether the subsets are disjoint.

    Disjoint chunks of one permutation when the trusted rows suffice, else independent
    random subsets (which overlap).
    """
    if n_reference < n_rows:
        raise ValueError(
            f"the reference data has {n_reference} rows, fewer than the suspect data's {n_rows}; "
            "reference runs must train on as many rows as the candidate: add trusted rows"
        )
    rng = random.Random(f"isaerft-audit-reference-{seed}")
    if n_reference >= n_runs * n_rows:
        order = rng.sample(range(n_reference), n_reference)
        return [sorted(order[i * n_rows : (i + 1) * n_rows]) for i in range(n_runs)], True
    return [sorted(rng.sample(range(n_reference), n_rows)) for _ in range(n_runs)], False


def _write_subset(rows: list[dict[str, Any]], indices: list[int], path: Path) -> Path:
    return write_text(path, "".join(json.dumps(rows[i]) + "\n" for i in indices))


@with_default_threads
def audit_dataset(
    suspect: str | Path,
    reference: str | Path,
    *,
    model: str | LanguageModel,
    sae: str | SAE[Any] | Sequence[str | SAE[Any]],
    out_dir: str | Path,
    recipe: Any = None,
    candidate_run: str | Path | None = None,
    n_reference_runs: int = 8,
    labels: str | Path | None = None,
    truth: str | Path | None = None,
    config: AuditConfig | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    bridge: bool | None = None,
    differential: bool = False,
) -> AuditResult:
    """Train the candidate and reference runs, audit the candidate, write the report.

    Args:
        suspect: the dataset under audit (JSONL rows).
        reference: trusted rows of the same kind; ``n_reference_runs`` times as many rows as
            the suspect data gives each reference run its own rows (best).
        model: a model spec (local folder, ``organism:<size>``, TransformerLens name) or a
            loaded ``HookedTransformer`` or ``TransformerBridge``.
        sae: an SAE spec or loaded SAE (or several).
        out_dir: the report folder; runs go to ``out_dir/runs/``.
        recipe: training settings: a ``TrainRecipe`` or a YAML path (used as is), or a dict of
            recipe sections (merged over :data:`DEFAULT_RECIPE`); its model, SAE and data are
            replaced.
        candidate_run: judge this finished training run (trained on ``suspect``) instead of
            training a candidate; the reference runs then repeat its recipe and step count.
        n_reference_runs: how many reference runs make the null (3 at least, 8 or more is
            better).
        labels: latent label file (defaults to the organism's for organism SAEs).
        truth: per-row ground truth for evaluation (defaults to ``<suspect>.labels.jsonl``).
        config: the audit's settings.
        device: where the model and SAEs given as specs load and where every run trains and
            the audit runs: ``cpu``, ``cuda`` or ``mps`` (sets the runs'
            ``trainer.accelerator``); default: the recipe's ``trainer.accelerator`` (``cpu``
            unless it names another).
        log: called with one line per step (e.g. ``print``).
        bridge: load a ``model`` spec as a ``TransformerBridge`` (a Hugging Face hub name or
            checkpoint folder); ``None`` follows the recipe's ``model_backend``. A loaded
            model is used as it is. The runs use the prefix cache on a ``HookedTransformer``
            and run every layer on a bridge.
        differential: first fit a *start* run on its own share of the trusted rows, then
            train the candidate and every reference run from it (``recipe.start_from``), so
            each run's edit is a sparse delta beyond the trusted fit and the audit compares
            those deltas (the trusted data then needs ``n_reference_runs + 1`` times the
            suspect's rows for disjoint shares).
    """
    from isaerft.training import PrefixCacheStore, TrainRecipe, train
    from isaerft.training.resolve import accelerator_for, torch_device

    say = log or (lambda _msg: None)
    if candidate_run is not None and recipe is not None:
        raise ValueError(
            "pass recipe or candidate_run, not both: the reference runs are trained with the "
            "candidate run's own recipe"
        )
    if differential and candidate_run is not None:
        raise ValueError(
            "differential=True trains a start run and a candidate from it; to judge an existing "
            "differential candidate pass candidate_run alone (its references then start where "
            "it started)"
        )
    if n_reference_runs < 3:
        raise ValueError(
            f"n_reference_runs={n_reference_runs}: a null needs at least 3 reference runs"
        )
    for name, path in (("suspect", suspect), ("reference", reference)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name} dataset {path} not found")
    out_dir = Path(out_dir)
    sae_items = [sae] if isinstance(sae, (str, SAE)) else list(sae)
    model_spec = model if isinstance(model, str) else IN_MEMORY_MODEL
    sae_specs = [s if isinstance(s, str) else IN_MEMORY_SAE for s in sae_items]
    start = _run_recipe(candidate_run) if candidate_run is not None else _recipe_dict(recipe)
    accelerator = (
        accelerator_for(device) if device else start.get("trainer", {}).get("accelerator", "cpu")
    )
    device = torch_device(accelerator)  # no such device here: one line, before any work
    if isinstance(model, str):
        from isaerft.loading import load_model

        if bridge is None:
            bridge = start.get("model_backend") == "bridge"
        model = load_model(resolve_model_spec(model), device=device, bridge=bridge)
    from isaerft.loading import load_sae

    saes = [
        load_sae(resolve_sae_spec(s), device=device) if isinstance(s, str) else s for s in sae_items
    ]
    backend = "bridge" if is_bridge(model) else "hooked"
    base = _merge(start, {"model": model_spec, "sae": sae_specs, "model_backend": backend})
    base = _merge(
        base,
        {
            "trainer": {
                "accelerator": accelerator,
                "prefix_cache": backend == "hooked",  # a bridge cannot start at a layer
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "logger": "none",
                "resume": "never",
            }
        },
    )
    store = PrefixCacheStore()

    def run(
        recipe_base: dict[str, Any], data: str | Path, trainer: dict[str, Any], name: str
    ) -> tuple[TrainRecipe, RunResult]:
        """Train one run of the audit (``recipe_base`` with its data and trainer overrides)."""
        recipe = TrainRecipe.from_dict(
            _merge(recipe_base, {"data": {"path": str(data)}, "trainer": trainer})
        )
        result = train(
            recipe, model=model, saes=saes, prefix_cache=store, run_dir=out_dir / "runs" / name
        )
        return recipe, result

    started = time.perf_counter()
    trusted = read_rows(reference)
    n_runs = n_reference_runs + 1 if differential else n_reference_runs
    subsets, disjoint = reference_subsets(len(trusted), len(read_rows(suspect)), n_runs)
    if differential:
        rows = subsets.pop(0)
        subset = _write_subset(trusted, rows, out_dir / "reference-data" / "start.jsonl")
        say(f"training the start run on {len(rows)} rows of {reference}")
        _, start_run = run(base, subset, {"seed": 0}, "start")
        base = _merge(base, {"start_from": str(start_run.run_dir)})
    if candidate_run is not None:
        cand_dir, cand_recipe, steps = _existing_candidate(candidate_run, suspect, base)
        say(f"judging the existing run {cand_dir} (trained on {suspect})")
    else:
        say(f"training the candidate run on {suspect}")
        cand_recipe, cand = run(base, suspect, {"seed": 0}, "candidate")
        cand_dir, steps = cand.run_dir, int(cand.summary["steps"])
    if not disjoint:
        warnings.warn(
            f"the reference data has {len(trusted)} rows, fewer than {n_runs} x the "
            f"suspect's {len(subsets[0])}: the reference runs share rows, so the null "
            "underestimates the noise of drawing a new dataset and the audit flags more often "
            "than its false-positive rate; add trusted rows",
            UserWarning,
            stacklevel=2,
        )
    ref_dirs = []
    for r, rows in enumerate(subsets, start=1):
        subset = _write_subset(trusted, rows, out_dir / "reference-data" / f"subset-{r:02d}.jsonl")
        say(f"training reference run {r}/{n_reference_runs} on {len(rows)} rows of {reference}")
        _, result = run(base, subset, {"seed": r, "max_steps": steps}, f"reference-{r:02d}")
        ref_dirs.append(result.run_dir)
    train_seconds = time.perf_counter() - started
    say("auditing")
    return audit_runs(
        cand_dir,
        ref_dirs,
        data=suspect,
        reference_data=reference,
        labels=labels,
        truth=truth,
        model=model,
        saes=saes,
        config=config,
        out_dir=out_dir,
        extra={
            "timings": {"train_s": train_seconds},
            "training": {"steps": steps, "recipe": cand_recipe.to_dict()},
        },
    )
