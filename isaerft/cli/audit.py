"""``isaerft audit`` (audit trained runs) and ``isaerft audit-dataset`` (train the runs, then audit)."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from isaerft.cli import LazyChoices
from isaerft.cli.errors import check_output_dir


def _score_methods() -> list[str]:
    from isaerft.audit.rowscores import SCORE_METHODS

    return list(SCORE_METHODS)


BRIDGE_HELP = (
    "load --model (a Hugging Face hub name or checkpoint folder) as a TransformerLens "
    "TransformerBridge, for architectures HookedTransformer lacks (Gemma 3, Qwen 3, ...)"
)


def register(subparsers: Any) -> None:
    """Add the ``audit`` and ``audit-dataset`` sub-commands."""
    runs = subparsers.add_parser(
        "audit",
        help="audit a trained run against reference runs",
        description=(
            "Audit a trained run: which latents it changed, how unusual that is against "
            "reference runs on trusted data, and which rows of the data drove it. Writes "
            "report.json, report.md, report.html and suspects.jsonl to --out."
        ),
    )
    runs.add_argument("run", help="the run directory to audit (written by isaerft train)")
    runs.add_argument(
        "--reference",
        nargs="+",
        default=[],
        metavar="RUN",
        help="reference runs of the same recipe on trusted data (3 or more for a verdict)",
    )
    runs.add_argument("--data", help="rows to audit (default: the run's training data)")
    runs.add_argument("--reference-data", help="trusted rows (suspect threshold, baselines)")
    runs.add_argument("--model", help="model spec, for runs without run.json")
    runs.add_argument("--sae", nargs="+", help="SAE spec(s), for runs without run.json")
    runs.add_argument("--bridge", action="store_true", help=BRIDGE_HELP)
    runs.add_argument(
        "--device", default="cpu", help="where the model and SAEs run: cpu, cuda, mps (default cpu)"
    )
    _common(runs)
    runs.set_defaults(func=run_audit)

    dataset = subparsers.add_parser(
        "audit-dataset",
        help="train candidate and reference runs on a suspect dataset, then audit it",
        description=(
            "Audit a suspect dataset in one go: train ISaeRFT on it (the candidate) and on "
            "trusted data with several seeds (the null), then write the audit report."
        ),
    )
    dataset.add_argument("suspect", help="the suspect dataset (JSONL rows)")
    dataset.add_argument(
        "--reference",
        required=True,
        help="trusted rows of the same kind: --runs times the suspect's rows gives each "
        "reference run its own rows (best)",
    )
    dataset.add_argument("--model", required=True, help="model spec (folder or organism:<size>)")
    dataset.add_argument("--sae", required=True, nargs="+", help="SAE spec(s)")
    dataset.add_argument(
        "--bridge",
        action="store_true",
        help=f"{BRIDGE_HELP} (default: the recipe's model_backend)",
    )
    dataset.add_argument("--recipe", help="YAML recipe with the training settings")
    dataset.add_argument(
        "--candidate",
        help="judge this finished run (trained on SUSPECT) instead of training a candidate; "
        "the reference runs repeat its recipe",
    )
    dataset.add_argument(
        "--runs", type=int, default=8, help="number of reference runs (default 8, at least 3)"
    )
    dataset.add_argument(
        "--differential",
        action="store_true",
        help="fit a start run on trusted rows first and train every run as a sparse delta from "
        "it; the audit compares the deltas (needs --runs + 1 times the suspect's trusted rows)",
    )
    dataset.add_argument(
        "--device",
        help="where the runs train and the audit runs: cpu, cuda, mps (default: the recipe's "
        "trainer.accelerator, cpu unless it names another)",
    )
    _common(dataset)
    dataset.set_defaults(func=run_audit_dataset)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", help="latent label file (Neuronpedia-style JSONL)")
    parser.add_argument("--truth", help="per-row ground truth JSONL ({row, poisoned}) to evaluate")
    parser.add_argument(
        "--fpr", type=float, default=0.05, help="false-positive rate (default 0.05)"
    )
    parser.add_argument(
        "--row-score",
        choices=LazyChoices(_score_methods),
        metavar="METHOD",
        default="excess_gain",
        help="per-row score: %(choices)s (default %(default)s)",
    )
    parser.add_argument(
        "--row-tokens",
        type=int,
        default=5,
        metavar="N",
        help="the excess_gain row score sums each row's N largest per-token gains; 0 sums every "
        "completion token (default %(default)s)",
    )
    parser.add_argument("--top", type=int, default=30, help="rows of the latent table")
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    parser.add_argument(
        "--allow-recipe-mismatch",
        action="store_true",
        help="audit even when a reference run was trained with other settings (the verdict "
        "then warns that it compares recipes as much as datasets)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="keep what the audit computes from the trusted rows alone (their SAE codes, the "
        "association search's null) in DIR for the next audit against them (changes no "
        "result, only the time)",
    )
    parser.add_argument("--out", required=True, help="output folder for the report")


def _config(args: argparse.Namespace) -> Any:
    from isaerft.audit import AuditConfig, NullConfig

    return AuditConfig(
        null=NullConfig(fpr=args.fpr),
        row_score=args.row_score,
        row_tokens=args.row_tokens,
        top=args.top,
        baselines=not args.no_baselines,
        allow_recipe_mismatch=args.allow_recipe_mismatch,
        cache_dir=args.cache_dir,
    )


def run_audit(args: argparse.Namespace) -> int:
    """``isaerft audit``."""
    from isaerft.audit import audit_runs

    _check_references(args.run, args.reference)
    check_output_dir(args.out, "--out")
    model, saes = None, None
    if args.bridge and not args.model:
        raise ValueError("--bridge applies to --model; a run's own recipe says how to load it")
    if (args.model or args.sae) and not (args.model and args.sae):
        raise ValueError("--model and --sae go together")
    from isaerft.training.resolve import accelerator_for, torch_device

    device = torch_device(accelerator_for(args.device))  # one line if it is not here
    with _threads(None, args.run):
        if args.model:
            from isaerft.loading import load_model, load_sae
            from isaerft.specs import resolve_model_spec, resolve_sae_spec

            model = load_model(resolve_model_spec(args.model), device=device, bridge=args.bridge)
            saes = [load_sae(resolve_sae_spec(s), device=device) for s in args.sae]
        result = audit_runs(
            args.run,
            args.reference,
            data=args.data,
            reference_data=args.reference_data,
            labels=args.labels,
            truth=args.truth,
            model=model,
            saes=saes,
            config=_config(args),
            out_dir=args.out,
            device=device,
        )
    print_summary(result.report, args.out)
    if not args.reference:
        print(NOTHING_COMPARED)
    return 0


NOTHING_COMPARED = (
    "nothing was compared: without --reference runs no edit can be called unusual, so no "
    "latent is flagged and there is no verdict; train 3 or more runs of the same recipe on "
    "trusted data and pass them with --reference"
)


def _check_references(run: str, references: list[str]) -> None:
    """Refuse the candidate as its own reference (it would make every edit look ordinary)."""
    candidate = Path(run).resolve()
    for reference in references:
        if Path(reference).resolve() == candidate:
            raise ValueError(
                f"--reference {reference} is the run being audited; references must be other "
                "runs, trained on trusted data"
            )
    if len({Path(r).resolve() for r in references}) < len(references):
        raise ValueError("--reference lists a run more than once; give each reference run once")


def run_audit_dataset(args: argparse.Namespace) -> int:
    """``isaerft audit-dataset``."""
    from isaerft.audit import audit_dataset

    check_output_dir(args.out, "--out")
    with _threads(args.recipe, args.candidate):
        result = audit_dataset(
            args.suspect,
            args.reference,
            model=args.model,
            sae=args.sae,
            out_dir=args.out,
            recipe=args.recipe,
            candidate_run=args.candidate,
            n_reference_runs=args.runs,
            labels=args.labels,
            truth=args.truth,
            config=_config(args),
            device=args.device,
            log=lambda msg: print(f"[audit] {msg}", flush=True),
            bridge=True if args.bridge else None,
            differential=args.differential,
        )
    print_summary(result.report, args.out)
    return 0


def _threads(recipe: str | None, run: str | None) -> AbstractContextManager[None]:
    """Print the audit's torch threads and return the block that sets them (restored after).

    The runs an audit trains pick theirs the same way (:func:`isaerft.training.train`), from
    the recipe they train with: ``recipe`` (a YAML file) or the finished ``run``'s."""
    from isaerft.threads import resolve_threads, torch_threads

    choice = resolve_threads(_recipe_threads(recipe, run))
    print(choice.describe(), flush=True)
    return torch_threads(choice.n)


def _recipe_threads(recipe: str | None, run: str | None) -> int | None:
    """``trainer.threads`` of the recipe file or of the run's ``run.json`` (``None`` if unset
    or unreadable: the audit reports an unreadable recipe or run itself)."""
    from isaerft.configbase import check_number, load_yaml
    from isaerft.runs import RUN_FILE, read_run_record

    data: Any = None
    try:
        if recipe is not None and Path(recipe).is_file():
            data = load_yaml(recipe, "recipe file")
        elif run is not None and (Path(run) / RUN_FILE).is_file():
            data = read_run_record(run).get("recipe")
    except (OSError, ValueError):
        return None
    trainer = data.get("trainer") if isinstance(data, dict) else None
    value = trainer.get("threads") if isinstance(trainer, dict) else None
    if value is not None:
        check_number("recipe trainer.threads", value, minimum=1, integer=True)
    return value


def print_summary(report: dict[str, Any], out: str) -> None:
    """Print the verdict, the flagged latents and the suspects in a few lines."""
    from isaerft.audit.association import pairing_lines
    from isaerft.audit.implicated import ROLE_LEGEND, describe_roles
    from isaerft.audit.words import words_lines

    verdict = report.get("verdict")
    if verdict:
        word = "FLAGGED" if verdict["flagged"] else "not flagged"
        print(
            f"verdict: {word} (score {verdict['score']:.2f}, threshold {verdict['threshold']:.2f} "
            f"at {verdict['fpr']:.0%} FPR)"
        )
        print(f"reading: {verdict['kind']}")
    flagged = report.get("flagged_latents", [])
    if report.get("references") == []:
        print("flagged latents (unusual edits): not computed, no reference runs")
    else:
        print(f"flagged latents (unusual edits): {len(flagged)}")
    for f in flagged[:10]:
        label = f" {f['label']}" if f.get("label") else ""
        print(f"  {f['hook_name']} #{f['index']:<6d} z={f['z']:+8.2f}{label}")
    for line in [
        *words_lines(report.get("words")),
        *pairing_lines(report.get("association_search")),
    ]:
        print(line)
    implicated = report.get("implicated_latents") or []
    if implicated:
        print(f"implicated latents ({ROLE_LEGEND}):")
        for e in implicated[:10]:
            label = f" {e['label']}" if e.get("label") else ""
            writes = f" (writes {' '.join(e.get('writes', [])[:3])})" if e.get("writes") else ""
            print(f"  {e['hook_name']} #{e['index']:<6d} {describe_roles(e):<32}{label}{writes}")
    rows = report.get("rows")
    if rows:
        print(f"suspect rows: {rows['n_suspects']} of {rows['n_rows']}")
    evaluation = report.get("evaluation") or {}
    if "row_auroc" in evaluation:
        print(f"row AUROC against ground truth: {evaluation['row_auroc']:.3f}")
    print(f"report: {out}/report.html")
