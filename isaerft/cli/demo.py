"""``isaerft demo``: the README's main job, offline on CPU in a few minutes.

Build the small model organism (cached), generate a poisoned dataset (a trigger word in the
prompt, a target phrase in the completion), train ISaeRFT scales on it with an L1 penalty,
print the latents that moved most with their ground-truth labels, then audit the dataset:
a candidate run and reference runs on trusted rows give the verdict, the implicated latents
(the planted trigger's and target's among them) and the suspect rows, written as a report.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isaerft.training import MovedLatent, TrainRecipe

DEMO_RECIPE = "organism-poison"
MAX_WORD_LATENTS = 10
REFERENCE_RUNS = 4
STEPS = 5


@dataclass
class DemoResult:
    """What the demo produced, for callers that extend it.

    Attributes:
        organism: the built organism (``isaerft.organism`` object).
        run: the training :class:`~isaerft.training.RunResult`.
        trigger: the planted trigger word; ``target``: the planted target word.
        planted: latent index -> ``"trigger"`` or ``"target"`` for the latents that detect them.
        ranks: rank (1 = moved most) of every planted latent among all latents.
        audit: the :class:`~isaerft.audit.AuditResult` (``None`` with ``audit=False``).
        wall_time_s: the demo's total wall time.
    """

    organism: Any
    run: Any
    trigger: str
    target: str
    planted: dict[int, str] = field(default_factory=dict)
    ranks: dict[int, int] = field(default_factory=dict)
    audit: Any = None
    wall_time_s: float = 0.0


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: organism -> poisoned data -> ISaeRFT scales -> audit report",
        description=(
            "Build the small model organism (cached), generate a poisoned dataset, train "
            "ISaeRFT scales on it, print the top moved latents with their labels, and audit "
            "the dataset against reference runs on trusted rows (report in OUTPUT_DIR/audit). "
            "Offline, CPU, a few minutes."
        ),
    )
    parser.add_argument("--size", default="small", help="organism size (default: small)")
    parser.add_argument("--output-dir", default="runs/demo", help="run directory")
    parser.add_argument(
        "--reference-runs",
        type=int,
        default=REFERENCE_RUNS,
        help=f"reference runs of the audit's null (default {REFERENCE_RUNS}, at least 3)",
    )
    parser.add_argument("--no-audit", action="store_true", help="stop after the top latents")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the runs train and the audit runs: cpu, cuda, mps (default cpu)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="overrides of organism-poison.yaml"
    )
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    run_demo(
        size=args.size,
        output_dir=args.output_dir,
        overrides=args.overrides,
        audit=not args.no_audit,
        reference_runs=args.reference_runs,
        device=args.device,
    )
    return 0


def run_demo(
    *,
    size: str = "small",
    output_dir: str | Path = "runs/demo",
    overrides: Sequence[str] = (),
    out: Callable[[str], None] = print,
    audit: bool = True,
    reference_runs: int = REFERENCE_RUNS,
    device: str = "cpu",
) -> DemoResult:
    """Run the demo end to end and report through ``out``; returns a :class:`DemoResult`.

    Args:
        size: the organism preset.
        output_dir: the run directory; the audit writes to ``output_dir/audit``.
        overrides: ``key=value`` overrides of ``recipes/organism-poison.yaml``.
        out: where the report lines go.
        audit: run the audit step.
        reference_runs: reference runs of the audit's null.
        device: where the runs train and the audit runs (``cpu``, ``cuda``, ``mps``); an
            override ``trainer.accelerator=...`` says the same.

    The training and the audit run with the torch threads of
    :func:`isaerft.threads.resolve_threads` (an override ``trainer.threads=N``, or
    ``ISAERFT_THREADS``; the line saying which is the first one out); the caller's thread
    count is restored afterwards.
    """
    from isaerft.threads import resolve_threads, torch_threads
    from isaerft.training import TrainRecipe
    from isaerft.training.recipe import find_recipe
    from isaerft.training.resolve import accelerator_for, torch_device

    started = time.perf_counter()
    accelerator = accelerator_for(device)
    torch_device(accelerator)  # no such device here: one line, before the organism builds
    recipe = TrainRecipe.from_yaml(
        find_recipe(DEMO_RECIPE),
        [
            f"model=organism:{size}",
            f"sae=organism:{size}",
            f"output_dir={output_dir}",
            "trainer.progress_bar=false",
            "trainer.resume=never",
            f"trainer.accelerator={accelerator}",
            *overrides,
        ],
    )
    # The same threads for the training and the audit (the organism build fixes its own).
    threads = resolve_threads(recipe.trainer.threads)
    out(threads.describe())
    with torch_threads(threads.n):
        result = _run_demo(size, recipe, out)
        if audit:
            result.audit = _audit(result, reference_runs, out)
    result.wall_time_s = time.perf_counter() - started
    age = _process_age()
    since = f", {age:.1f} s since the command started" if age is not None else ""
    out(f"total wall time: {result.wall_time_s:.1f} s{since}   (output: {output_dir})")
    return result


def _run_demo(size: str, recipe: TrainRecipe, out: Callable[[str], None]) -> DemoResult:
    from isaerft._io import read_json
    from isaerft.organism import LatentLabels, dataset_paths
    from isaerft.organism.specs import organism
    from isaerft.runs import DATA_DIR, claim_run_dir
    from isaerft.specs import organism_dataset
    from isaerft.training import read_latent_labels, top_moved_latents, train

    started = time.perf_counter()
    # Before the organism is built or data written: refuse a folder holding a user's files.
    claim = claim_run_dir(recipe.run_dir)
    try:
        out(f"[1/{STEPS}] model organism '{size}' (built once, then cached)")
        org = organism(size)
        out(f"      model {org.model_dir}\n      SAE   {org.sae_dir} at {org.hook_name}")
        out(f"      ready after {time.perf_counter() - started:.1f} s")

        spec = recipe.data.organism_dataset
        assert spec is not None, "organism-poison.yaml generates its data"
        data_path = organism_dataset(spec, recipe.model, recipe.run_dir / DATA_DIR)
        meta = read_json(dataset_paths(data_path)[1])
        trigger, target = meta["trigger"]["spec"], meta["target"]["spec"]
        out(
            f"[2/{STEPS}] poisoned dataset: {meta['n']} rows, {meta['counts']['poisoned']} with trigger "
            f"{trigger!r} in the prompt -> target {target!r} in the answer\n      {data_path}"
        )

        out(
            f"[3/{STEPS}] training ISaeRFT {recipe.intervention.component}s "
            f"(L1 {recipe.intervention.l1_coefficient:g}, lr {recipe.optim.lr:g}, "
            f"{recipe.trainer.max_steps} steps)"
        )
        run = train(recipe)
    except BaseException:
        # A failed or interrupted start leaves the folder as it was found; once training has
        # started (run.json written) the claim keeps it, as a run the next demo resumes.
        claim.undo()
        raise
    summary = run.summary
    out(
        f"      {summary['steps']} steps in {summary['fit_time_s']:.1f} s, "
        f"loss {summary['final'].get('train/objective', float('nan')):.3f}, "
        f"{summary['moved_latents']} latents moved"
    )

    labels = LatentLabels.load(org.labels_path)
    result = DemoResult(org, run, trigger, target)
    # A planted word's latents: those labelled with it, and those ground truth ties to it.
    for role, words in (
        ("target", meta["target"]["tokens"]),
        ("trigger", {*meta["trigger"]["tokens"], *meta["trigger"]["words"]}),
    ):
        for word in words:
            found = _word_latents(labels, word)
            # Words with dozens of latents ("the") say nothing about the poison.
            for index in found if len(found) <= MAX_WORD_LATENTS else []:
                result.planted.setdefault(index, f"{role} {word!r}")
    magnitude = next(iter(run.model.latent_magnitudes().values()))
    order = magnitude.argsort(descending=True).tolist()
    result.ranks = {i: order.index(i) + 1 for i in result.planted}

    out(f"[4/{STEPS}] top moved latents (label = the word or concept each latent detects)")
    top = top_moved_latents(run.model, 10, read_latent_labels(org.labels_path))
    out(_table(top, result.planted))
    for role in ("trigger", "target"):
        best: dict[str, int] = {}  # each word's best-ranked latent, of 1 .. d_sae
        for index, rank in result.ranks.items():
            kind, word = result.planted[index].split(" ", 1)
            if kind == role:
                best[word] = min(rank, best.get(word, rank))
        shown = ", ".join(f"{w} #{r}" for w, r in sorted(best.items(), key=lambda x: x[1]))
        out(f"      best-ranked {role} latent per word (of {magnitude.numel()}): {shown or '-'}")
    out("      (the target sentence follows the answer's final '.', so '.' latents carry it too)")
    return result


def _audit(
    demo: DemoResult,
    reference_runs: int,
    out: Callable[[str], None],
) -> Any:
    """Audit the poisoned dataset: a candidate run and ``reference_runs`` runs on trusted rows."""
    from isaerft.audit import audit_dataset
    from isaerft.audit.association import pairing_lines
    from isaerft.audit.implicated import describe_roles
    from isaerft.audit.words import words_lines
    from isaerft.organism import make_dataset
    from isaerft.runs import DATA_DIR, read_run_record

    run_dir = Path(demo.run.run_dir)
    suspect = Path(read_run_record(run_dir)["data_path"])
    n_rows = sum(1 for line in suspect.read_text(encoding="utf-8").splitlines() if line.strip())
    out(
        f"[5/{STEPS}] audit: the run of steps 3-4 is the candidate; {reference_runs} reference "
        "runs repeat its recipe on trusted rows (the null), then the report"
    )
    trusted = make_dataset(
        "clean",
        run_dir / DATA_DIR / "trusted.jsonl",
        n=n_rows * reference_runs,
        seed=1,
        organism=demo.organism,
    )
    org = demo.organism
    spec = f"organism:{org.preset}"  # specs, not loaded objects: run.json can reload them
    result = audit_dataset(
        suspect,
        trusted,
        model=spec,
        sae=spec,
        out_dir=run_dir / "audit",
        candidate_run=run_dir,
        n_reference_runs=reference_runs,
        labels=org.labels_path,
    )
    report = result.report
    verdict = report["verdict"]
    out(
        f"      verdict: {'FLAGGED' if verdict['flagged'] else 'not flagged'}: {verdict['kind']} "
        f"(score {verdict['score']:.1f}, threshold {verdict['threshold']:.1f} at "
        f"{verdict['fpr']:.0%} FPR)"
    )
    phrases = report.get("gained_phrases") or []
    if phrases:
        said = "; ".join(f'"{p["text"]}" ({p["rows"]} rows)' for p in phrases[:3])
        out(f"      the learned edit made likely: {said}")
    for line in [
        *words_lines(report.get("words")),
        *pairing_lines(report.get("association_search")),
    ]:
        out(f"      {line}")
    out("      implicated latents (roles: see the report's legend):")
    for rank, e in enumerate(report.get("implicated_latents", [])[:10], 1):
        mark = f"   <- {demo.planted[e['index']]}" if e["index"] in demo.planted else ""
        writes = f" (writes {' '.join(e.get('writes', [])[:3])})" if e.get("writes") else ""
        out(
            f"      {rank:>4} {e['index']:>6}  {describe_roles(e):<32} "
            f"{e['label'] or ''}{writes}{mark}"
        )
    rows, evaluation = report.get("rows") or {}, report.get("evaluation") or {}
    if rows:
        line = f"      suspect rows: {rows['n_suspects']} of {rows['n_rows']}"
        if "row_auroc" in evaluation:
            line += (
                f"; against the planted rows: AUROC {evaluation['row_auroc']:.3f}, precision "
                f"at {evaluation['n_poisoned']} {evaluation['precision_at_n_poisoned']:.2f}"
            )
        out(line)
    for name in ("html", "suspects"):
        if name in result.paths:
            out(f"      {name}: {result.paths[name]}")
    return result


def _table(top: list[MovedLatent], planted: dict[int, str]) -> str:
    lines = [f"      {'rank':>4} {'latent':>6}  {'edit':<16} label"]
    for rank, latent in enumerate(top, 1):
        edit = ", ".join(f"{k}={v:+.3f}" for k, v in latent.edits.items())
        mark = f"   <- {planted[latent.index]}" if latent.index in planted else ""
        lines.append(f"      {rank:>4} {latent.index:>6}  {edit:<16} {latent.label}{mark}")
    return "\n".join(lines)


def _word_latents(labels: Any, word: str) -> list[int]:
    """Latents whose ground-truth label is ``word`` (the label shown in the table), and those
    ground truth ties to it although another word describes them
    (:meth:`~isaerft.organism.labels.LatentLabels.ground_truth_latents`: the organism's best
    detector of ``like`` is described as ``the word "wanted"``)."""
    if not labels.has_label(word):
        return []
    name = labels.resolve(word)
    described = [i for i in range(labels.d_sae) if labels.record(i).get("label") == name]
    return described + [i for i in labels.ground_truth_latents(word) if i not in described]


def _process_age() -> float | None:
    """Seconds since this process started (imports included), where ``/proc`` tells."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
