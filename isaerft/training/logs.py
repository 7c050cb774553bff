"""Metric loggers per attempt, and one merged ``metrics.csv`` for a run that was resumed.

Each start of a run (the first, and every resume) logs into ``logs/attempt-K/``; a resumed
attempt replays the steps after its checkpoint, so merging keeps an earlier attempt's rows
only up to the step the next attempt resumed from.
"""

from __future__ import annotations

import csv
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.utilities import rank_zero_only

from isaerft._io import read_json, write_json, write_text

ATTEMPTS_FILE = "attempts.json"


def make_loggers(
    run_dir: Path, kind: str, flush_every: int, resume_step: int | None
) -> tuple[list[Logger], Path | None]:
    """The loggers for a new attempt (``[]`` for ``kind == "none"``) and its log folder."""
    if kind == "none":
        return [], None
    logs = run_dir / "logs"
    attempts: list[dict[str, Any]] = (
        read_json(logs / ATTEMPTS_FILE) if (logs / ATTEMPTS_FILE).is_file() else []
    )
    name = f"attempt-{len(attempts)}"
    if getattr(rank_zero_only, "rank", 0) == 0:
        write_json(
            logs / ATTEMPTS_FILE, [*attempts, {"attempt": name, "start_step": resume_step or 0}]
        )
    loggers: list[Logger] = [
        CSVLogger(str(logs), name="", version=name, flush_logs_every_n_steps=max(1, flush_every))
    ]
    if kind == "tensorboard":
        try:
            from pytorch_lightning.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(logs), name="tensorboard", version=name))
        except ModuleNotFoundError as err:
            raise ValueError(
                "trainer.logger=tensorboard needs the tensorboard package: pip install tensorboard"
            ) from err
    return loggers, logs / name


def merge_metrics(logs: Path, out: Path) -> Path | None:
    """Write ``out`` from every attempt's ``metrics.csv``, dropping replayed steps."""
    attempts: list[dict[str, Any]] = read_json(logs / ATTEMPTS_FILE)
    rows: list[dict[str, str]] = []
    for attempt in attempts:
        path = logs / attempt["attempt"] / "metrics.csv"
        start = int(attempt["start_step"])
        rows = [r for r in rows if _step(r) < start]
        if path.is_file():
            with open(path, encoding="utf-8", newline="") as fh:
                rows += list(csv.DictReader(fh))
    if not rows:
        return None
    columns = sorted({k for r in rows for k in r}, key=lambda c: (c != "step", c))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text(out, buffer.getvalue())


def _step(row: dict[str, str]) -> int:
    try:
        return int(float(row.get("step") or 0))
    except ValueError:
        return 0


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up chatter and the expected frozen-module warnings."""
    levels = {}
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        levels[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (
                ".*module\\(s\\) in eval mode.*",
                ".*does not have many workers.*",
                ".*smaller than the logging interval.*",
                ".*Checkpoint directory .* exists and is not empty.*",
                ".*treespec, LeafSpec.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
