"""Scoring an audit against ground truth, where it exists (the organism, planted benchmarks).

Row truth comes from a JSONL file with one ``{"row": i, "poisoned": bool, ...}`` per row (the
organism's ``make_dataset`` writes one next to every dataset). Latent truth is a set of
``(hook, index)`` latents that ground truth ties to the trigger and the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from isaerft._io import iter_jsonl
from isaerft.audit.rowscores import RowScores, auroc


def read_truth(path: str | Path, n_rows: int) -> list[bool]:
    """Per row, whether it is poisoned, from a ``{"row", "poisoned"}`` JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"row label file {path} not found")
    truth = [False] * n_rows
    seen = 0
    for n, record in iter_jsonl(path):
        if not isinstance(record, dict) or "poisoned" not in record:
            raise ValueError(f"{path} line {n} has no 'poisoned' field")
        row = int(record.get("row", seen))
        if not 0 <= row < n_rows:
            raise ValueError(
                f"{path} line {n} labels row {row} but the audited data has {n_rows} rows; "
                "the label file belongs to another dataset"
            )
        truth[row] = bool(record["poisoned"])
        seen += 1
    if seen != n_rows:
        raise ValueError(
            f"{path} labels {seen} rows but the audited data has {n_rows}; the label file "
            "belongs to another dataset"
        )
    return truth


def evaluate_rows(scores: RowScores, truth: Sequence[bool]) -> dict[str, Any]:
    """Localisation quality: AUROC, precision at the true number of poisoned rows, and the
    precision/recall of the suspect list."""
    y = torch.tensor(list(truth), dtype=torch.bool)
    n_pos = int(y.sum())
    out: dict[str, Any] = {"n_rows": len(truth), "n_poisoned": n_pos}
    if n_pos == 0 or n_pos == len(truth):
        return out
    order = scores.order
    suspects = set(scores.suspects)
    hits = sum(bool(y[i]) for i in suspects)
    out["row_auroc"] = auroc(scores.scores, y)
    out["precision_at_n_poisoned"] = sum(bool(y[i]) for i in order[:n_pos]) / n_pos
    out["n_suspects"] = len(suspects)
    out["suspect_precision"] = hits / len(suspects) if suspects else None
    out["suspect_recall"] = hits / n_pos
    return out
