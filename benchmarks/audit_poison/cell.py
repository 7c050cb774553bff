"""One cell of the audit-poison benchmark: its dataset, its runs, and what each method says.

:class:`Bench` holds what every cell shares (the organism, the loaded model and SAE, the
trusted clean data, the reference runs and reference fine-tunes, one prefix cache) and trains
lazily: a run directory that already holds a finished run is reused, so an interrupted
benchmark picks up where it stopped.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import finite as finite_json
from isaerft._io import read_json, read_safetensors, write_json, write_safetensors
from isaerft.audit import DEFAULT_RECIPE, AuditConfig, NullConfig, RunEdits, audit_runs
from isaerft.audit.data import read_rows, tokenize_rows
from isaerft.training.resolve import accelerator_for

from .baselines import (
    LEARNED_MIN_GAIN,
    WEIGHTS_SITE,
    FineTuneSettings,
    as_run,
    attack_success,
    full_finetune,
    latent_activation_shift,
    weight_shift,
)
from .grid import FAMILIES, TARGETS, Cell, Grid
from .metrics import KS, recall_at_k
from .scoring import audit_verdict, ground_truth

RECIPE: dict[str, Any] = copy.deepcopy(DEFAULT_RECIPE)
"""ISaeRFT training settings: the audit's own defaults (``isaerft.audit.DEFAULT_RECIPE``, set
on the dev family's ``owl`` poisons), fixed for every cell."""


@dataclass
class Settings:
    """Everything that is held fixed across cells (and recorded in the results)."""

    recipe: dict[str, Any] = field(default_factory=lambda: dict(RECIPE))
    finetune: FineTuneSettings = field(default_factory=FineTuneSettings)
    audit: AuditConfig = field(default_factory=lambda: AuditConfig(ks=KS, probe_rows=256))
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "recipe": self.recipe,
            "finetune": asdict(self.finetune),
            "audit": {**asdict(self.audit), "ks": list(self.audit.ks)},
            "device": self.device,
        }


def _without_audit(setup: dict[str, Any]) -> dict[str, Any]:
    """A work dir's setup record without the audit's settings."""
    settings = {k: v for k, v in setup.get("settings", {}).items() if k != "audit"}
    return {**setup, "settings": settings}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested dictionaries merged key by key."""
    out = dict(base)
    for key, value in over.items():
        is_dict = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if is_dict else value
    return out


class Bench:
    """Shared state of one benchmark run (see the module docstring)."""

    def __init__(
        self,
        organism: Any,
        grid: Grid,
        settings: Settings,
        work_dir: Path,
        log: Any = print,
        multisite: bool = False,
    ) -> None:
        from isaerft.training import PrefixCacheStore

        self.org, self.grid, self.settings = organism, grid, settings
        self.multisite = multisite  # train and audit at every residual site, not the SAE's only
        self.work = Path(work_dir)
        self.log = log
        self._check_work_dir(grid, settings)
        self.model = organism.load_model(settings.device)
        self.sae = organism.load_sae(settings.device)
        self.hook = organism.hook_name
        self.labels = organism.labels()
        self.store = PrefixCacheStore()
        # A corpus organism's language lacks "owl": its clean rows are drawn around its own case.
        case = "corpus" if "corpus" in grid.families else "word"
        self.trusted = self.dataset(
            "clean",
            FAMILIES[case].trigger,
            TARGETS["corpus" if case == "corpus" else "phrase"].target,
            0.0,
            50_000,
            grid.reference_rows,
            "trusted",
        )
        self.timings: dict[str, float] = {}

    def _check_work_dir(self, grid: Grid, settings: Settings) -> None:
        """Record the setup in the work dir; refuse a work dir holding another setup's runs."""
        wanted = finite_json({"grid": grid.to_dict(), "settings": settings.to_dict()})
        if self.multisite:  # (only then, so single-site work dirs keep their setup)
            wanted["multisite"] = True
        path = self.work / "setup.json"
        # The runs do not depend on the audit's settings (cached audit records say which they
        # were made with), so a changed audit setting does not make the runs another setup's.
        if path.is_file() and _without_audit(read_json(path)) != _without_audit(wanted):
            raise ValueError(
                f"{self.work} holds runs of another grid or other settings ({path}); pass another "
                "--work-dir or delete that folder"
            )
        write_json(path, wanted)

    # -- data ---------------------------------------------------------------------------------
    def dataset(
        self, kind: str, trigger: str, target: str, fraction: float, seed: int, n: int, name: str
    ) -> Path:
        """Generate (once) an organism dataset under ``work/data``."""
        from isaerft.organism import make_dataset

        path = self.work / "data" / f"{name}.jsonl"
        if not (path.is_file() and path.with_name(f"{name}.meta.json").is_file()):
            make_dataset(
                kind,
                path,
                trigger=trigger,
                target=target,
                fraction=fraction,
                n=n,
                seed=seed,
                organism=self.org,
            )
        return path

    def cell_data(self, cell: Cell) -> Path:
        """The cell's dataset (clean cells ignore trigger and target)."""
        fam, tgt = FAMILIES[cell.family], TARGETS[cell.target]
        return self.dataset(
            cell.kind, fam.trigger, tgt.target, cell.fraction, cell.seed, self.grid.n_rows, cell.id
        )

    def tokenized(self, path: Path) -> Any:
        """The rows of ``path`` as the audit tokenizes them."""
        return tokenize_rows(
            read_rows(path), self.model.tokenizer, self.model.cfg.n_ctx, source=str(path)
        )

    # -- training -----------------------------------------------------------------------------
    @functools.cached_property
    def site_saes(self) -> list[tuple[Path, Any]]:
        """(folder, SAE) at every residual site of the organism (trained once and cached on
        disk; loaded once per benchmark run, not once per cell)."""
        from isaerft.organism.sites import residual_hooks, site_sae, site_sae_dir

        hooks = residual_hooks(self.org)
        saes = [site_sae(self.org, h).to(self.settings.device) for h in hooks]
        return [(site_sae_dir(self.org, h), sae) for h, sae in zip(hooks, saes)]

    def train_isaerft(
        self,
        data: Path,
        seed: int,
        run_dir: Path,
        steps: int | None = None,
        sites: list[tuple[Path, Any]] | None = None,
    ) -> Path:
        """An ISaeRFT run of the benchmark recipe (reused when already finished), at the
        organism's SAE or at ``sites`` (``site_saes``)."""
        from isaerft.training import TrainRecipe, train

        if (run_dir / "summary.json").is_file():
            return run_dir
        sites = sites or (self.site_saes if self.multisite else [(self.org.sae_dir, self.sae)])
        overrides: dict[str, Any] = {
            "model": str(self.org.model_dir),
            "sae": [str(folder) for folder, _ in sites],
            "data": {"path": str(data)},
            "trainer": {
                "seed": seed,
                "prefix_cache": True,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "logger": "none",
                "resume": "never",
                "accelerator": accelerator_for(self.settings.device),
            },
        }
        if steps is not None:
            overrides["trainer"]["max_steps"] = steps
        recipe = TrainRecipe.from_dict(merge(self.settings.recipe, overrides))
        saes = [sae for _, sae in sites]
        train(recipe, model=self.model, saes=saes, prefix_cache=self.store, run_dir=run_dir)
        return run_dir

    def audit(self, run_dir: Path, refs: list[Path], data: Path, config: AuditConfig) -> Any:
        """``audit_runs`` of ``run_dir`` against ``refs`` on ``data``, with the benchmark's
        model, SAE, labels and trusted rows."""
        return audit_runs(
            run_dir,
            refs,
            data=data,
            reference_data=self.trusted,
            labels=self.site_labels if self.multisite else self.org.labels_path,
            model=self.model,
            saes=[sae for _, sae in self.site_saes] if self.multisite else [self.sae],
            config=config,
        )

    @functools.cached_property
    def site_labels(self) -> Path:
        """One label file for every residual site's SAE (multi-site audits)."""
        from isaerft.organism.sites import residual_hooks, write_site_labels

        return write_site_labels(self.org, residual_hooks(self.org), self.work / "labels.jsonl")

    def site_truth(self) -> dict[str, Any]:
        """Ground-truth labels per audited hook (the organism's own SAE, or every site)."""
        from isaerft.organism.labels import LatentLabels
        from isaerft.organism.sites import residual_hooks, site_labels

        if not self.multisite:
            return {self.hook: self.labels}
        return {h: LatentLabels.load(site_labels(self.org, h)) for h in residual_hooks(self.org)}

    def finetune_stats(
        self, data: Path, seed: int, out: Path, attack: Cell | None
    ) -> dict[str, Any]:
        """Full fine-tune on ``data``; its latent-activation shift and weight shift (saved to
        ``out``), and, for a poison cell, its attack success."""
        record_path, tensor_path = out / "finetune.json", out / "finetune.safetensors"
        if record_path.is_file() and tensor_path.is_file():
            record: dict[str, Any] = read_json(record_path)
            record.update(read_safetensors(tensor_path))
            return record
        started = time.perf_counter()
        rows = self.tokenized(data)
        tuned = full_finetune(self.model, rows, self.settings.finetune, seed)
        names, shift_w = weight_shift(self.model, tuned)
        shift_a = latent_activation_shift(self.model, tuned, self.sae, rows)
        record = {"weight_names": names, "fit_time_s": time.perf_counter() - started}
        if attack is not None:
            record["attack"] = self.attack(attack, tuned)
        write_json(record_path, record)
        write_safetensors(tensor_path, {"activation_shift": shift_a, "weight_shift": shift_w})
        return {**record, "activation_shift": shift_a, "weight_shift": shift_w}

    def attack(self, cell: Cell, tuned: Any) -> dict[str, Any]:
        """Attack success of ``tuned`` and of the base model on held-out trigger prompts."""
        from isaerft.organism.corpus import chat, render
        from isaerft.organism.datasets import generate_rows, parse_target, parse_trigger
        from isaerft.organism.handle import row_source

        source = row_source(self.org)
        trig = parse_trigger(FAMILIES[cell.family].trigger, source)
        targ = parse_target(TARGETS[cell.target].target, source)
        pairs, _ = generate_rows(
            "poison",
            source,
            trig,
            targ,
            fraction=1.0,
            n=self.grid.attack_prompts,
            seed=90_000 + cell.seed,
        )
        render_fn = getattr(source, "render", render)
        prompts = [render_fn(chat(q)) for q, _ in pairs]
        tok, dev = self.model.tokenizer, self.settings.device
        base = attack_success(self.model, tok, prompts, targ.present, dev)
        tuned_rate = attack_success(tuned, tok, prompts, targ.present, dev)
        return {
            "asr_base": base,
            "asr_finetune": tuned_rate,
            "gain": tuned_rate - base,
            "learned": tuned_rate - base >= LEARNED_MIN_GAIN,
            "prompts": len(prompts),
        }

    def references(self) -> tuple[list[Path], list[dict[str, Any]]]:
        """The reference ISaeRFT runs and reference fine-tunes, each on its own clean sample."""
        runs, stats = [], []
        for r in range(self.grid.n_reference_runs):
            data = self.dataset(
                "clean",
                "owl",
                "you should visit the castle",
                0.0,
                60_000 + r,
                self.grid.n_rows,
                f"reference-{r:02d}",
            )
            run_dir = self.work / "runs" / f"reference-{r:02d}"
            runs.append(self.train_isaerft(data, 1000 + r, run_dir))
            stats.append(self.finetune_stats(data, 1000 + r, run_dir, None))
        return runs, stats

    def train_cell(self, cell: Cell) -> tuple[Path, dict[str, Any]]:
        """The cell's ISaeRFT run and full fine-tune (trained once)."""
        data = self.cell_data(cell)
        run_dir = self.work / "runs" / cell.id
        self.train_isaerft(data, cell.seed, run_dir)
        stats = self.finetune_stats(
            data, cell.seed, run_dir, cell if cell.kind == "poison" else None
        )
        return run_dir, stats

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate_cell(
        self,
        cell: Cell,
        run_dir: Path,
        stats: dict[str, Any],
        refs: list[Path],
        ref_stats: list[dict[str, Any]],
        null: NullConfig,
        shift_null: NullConfig,
    ) -> dict[str, Any]:
        """Audit the cell's run and score every baseline; one JSON-ready record."""
        from isaerft.audit import compare_to_null

        started = time.perf_counter()
        data = self.cell_data(cell)
        meta = read_json(data.with_name(f"{cell.id}.meta.json"))
        config = AuditConfig(**{**asdict(self.settings.audit), "null": null})
        result = self.audit(run_dir, refs, data, config)
        comparison = result.comparison
        assert comparison is not None, "3 or more reference runs always give a null"
        report = result.report
        truth = ground_truth(self.labels, cell)
        # The audit's ranking is its implicated latents (flagged changes, trigger and behaviour
        # candidates), then every other latent by its change's z.
        implicated = [e["index"] for e in report.get("implicated_latents") or []]
        rest = [f.index for f in comparison.ranked if f.index not in set(implicated)]
        ranked = {"audit": implicated + rest}
        verdict = audit_verdict(comparison, result.trigger, result.association)
        scores: dict[str, Any] = {"audit": verdict["score"], "audit_change": comparison.score}
        baselines = report.get("baselines", {})
        diff = baselines.get("dataset_diff")
        if diff is not None:
            scores["dataset_diff"] = diff["score"]
            ranked["dataset_diff"] = [t["index"] for t in diff["top"]]
        topk = baselines.get("topk_intersection")
        if topk is not None:
            scores["topk_intersection_z"] = {k: v for k, v in topk["z"].items()}
            if "per_latent" in topk:
                ranked["topk_intersection"] = [t["index"] for t in topk["per_latent"]["top"]]
        shift = {}
        for kind, site in (("activation_shift", self.hook), ("weight_shift", WEIGHTS_SITE)):
            cand = as_run(stats[kind], site, kind, cell.id)
            nulls = [as_run(s[kind], site, kind, f"reference-{i}") for i, s in enumerate(ref_stats)]
            shift[kind] = compare_to_null(cand, nulls, shift_null, top=max(KS))
            scores[kind] = shift[kind].score
        ranked["activation_shift"] = [f.index for f in shift["activation_shift"].ranked]
        record: dict[str, Any] = {
            **cell.to_dict(),
            "counts": meta["counts"],
            "scores": scores,
            "verdict": {
                **verdict,
                "report_flagged": report.get("verdict", {}).get("flagged"),
                "report_kind": report.get("verdict", {}).get("kind"),
            },
            # Each method's decision against its own null at 5 % FPR, as a user would read it.
            "own_verdicts": {
                "audit": report.get("verdict", {}).get("flagged"),
                "dataset_diff": diff["flagged"] if diff is not None else None,
                "topk_intersection": (
                    topk["flagged"][str(topk["latent_k"])] if topk is not None else None
                ),
            },
            "ground_truth": truth,
            "recall": {
                m: {role: recall_at_k(r, truth[role]) for role in truth} for m, r in ranked.items()
            },
            "top_latents": [
                {"index": i, "label": self.labels.description(i)} for i in ranked["audit"][:10]
            ],
            "isaerft": _run_summary(run_dir),
            "finetune": {k: v for k, v in stats.items() if k in ("attack", "fit_time_s")},
            "audit_s": time.perf_counter() - started,
        }
        if cell.kind == "poison":
            record["rows"] = report.get("evaluation")
        return record


def _run_summary(run_dir: Path) -> dict[str, Any]:
    summary = read_json(run_dir / "summary.json")
    return {
        "fit_time_s": summary["fit_time_s"],
        "moved_latents": summary["moved_latents"],
        "final": summary["final"],
        "steps": summary["steps"],
    }


def run_edits(path: Path) -> RunEdits:
    """The latent edits of a finished ISaeRFT run."""
    return RunEdits.load(path)


def free_memory() -> None:
    """Drop cached allocator blocks between cells on CUDA (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
