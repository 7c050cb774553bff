"""Lightning callbacks: the periodic top-moved-latents log, and the latent labels it shows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from isaerft._io import read_label_records, write_text
from isaerft.model import ISaeRFTModel


def read_latent_labels(path: str | Path) -> dict[int, str]:
    """Latent index -> description from a Neuronpedia-style JSONL export.

    Each line needs ``index`` and ``description``; when an index appears more than once the
    line with the highest ``score`` wins.
    """
    best: dict[int, tuple[float, str]] = {}
    for record in read_label_records(path, fix="fix the recipe's labels"):
        index, description = int(record["index"]), str(record["description"])
        score = float(record.get("score") or 0.0)
        if index not in best or score > best[index][0]:
            best[index] = (score, description)
    return {index: description for index, (_, description) in best.items()}


@dataclass
class MovedLatent:
    """One latent's trained edit: where it is, how far it moved, and what it means."""

    hook_name: str
    index: int
    magnitude: float
    edits: dict[str, float]
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of this latent."""
        return asdict(self)


def top_moved_latents(
    model: ISaeRFTModel, k: int = 10, labels: dict[int, str] | None = None
) -> list[MovedLatent]:
    """The ``k`` latents (over all sites) with the largest edit magnitude, largest first."""
    candidates: list[tuple[float, str, int]] = []
    for hook, magnitude in model.latent_magnitudes().items():
        values, indices = magnitude.float().topk(min(k, magnitude.numel()))
        candidates += [(float(v), hook, int(i)) for v, i in zip(values, indices)]
    candidates.sort(key=lambda c: -c[0])
    edits = model.latent_edits()
    out = []
    for size, hook, index in candidates[:k]:
        per_edit = {name: float(t[index]) for name, t in edits[hook].items()}
        label = labels.get(index) if labels else None
        out.append(MovedLatent(hook, index, size, per_edit, label))
    return out


def format_moved_latents(latents: list[MovedLatent]) -> str:
    """A small text table of moved latents for logs and the terminal."""
    lines = [f"{'rank':>4}  {'hook':<28} {'latent':>7}  {'edit':>9}  label"]
    for rank, latent in enumerate(latents, 1):
        edit = ", ".join(f"{k}={v:+.3f}" for k, v in latent.edits.items())
        label = latent.label if latent.label is not None else "-"
        lines.append(f"{rank:>4}  {latent.hook_name:<28} {latent.index:>7}  {edit:>9}  {label}")
    return "\n".join(lines)


class TopLatentsLogger(pl.Callback):
    """Every ``every_n_steps`` optimizer steps, append the top moved latents to a JSONL file
    (and print them when ``verbose``), on global rank 0 only."""

    def __init__(
        self,
        path: str | Path,
        every_n_steps: int,
        k: int = 10,
        labels: dict[int, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.path, self.every, self.k = Path(path), every_n_steps, k
        self.labels, self.verbose = labels, verbose
        self._last_step = -1
        # A resumed run keeps the records written before the interruption.
        self._lines = (
            self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Log the top moved latents every ``every_n_steps`` optimizer steps."""
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step or step % self.every:
            return
        self._last_step = step
        model = pl_module.isaerft
        if not isinstance(model, ISaeRFTModel):
            return
        with torch.no_grad():
            latents = top_moved_latents(model, self.k, self.labels)
        record = {"step": step, "latents": [m.to_dict() for m in latents]}
        self._lines = [ln for ln in self._lines if json.loads(ln).get("step", -1) < step]
        self._lines.append(json.dumps(record))
        write_text(self.path, "\n".join(self._lines) + "\n")
        if self.verbose:
            print(f"\nstep {step}: top moved latents\n{format_moved_latents(latents)}")
