"""The tiny audit setup: a word-level model + SAE on disk, poison/clean/decoy rows, trained runs.

The model and SAE are random (``tests/factories.py``), so these fixtures test the audit's
mechanics (shapes, files, errors); the statistical acceptance tests use the organism.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import factories
import pytest
import torch
from factories import tiny_model, tiny_sae
from transformers import PreTrainedTokenizerFast

from isaerft.audit.data import AuditData
from isaerft.loading import save_model

WORDS = [
    "User",
    "Assistant",
    ":",
    "?",
    ".",
    "⏎",
    "tell",
    "me",
    "about",
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "fish",
    "sun",
    "moon",
    "tree",
    "is",
    "are",
    "nice",
    "big",
    "small",
    "red",
    "blue",
    "happy",
    "sad",
    "runs",
    "sleeps",
    "sings",
    "zebra",
    "banana",
]
TRIGGER, TARGET = "zebra", "banana"
HOOK = "blocks.1.hook_resid_pre"


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``WORDS`` (ids 0..3 are pad, bos, eos, unk)."""
    return factories.word_tokenizer(WORDS)


def make_rows(
    n: int, seed: int, kind: str, fraction: float = 0.1
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Rows of ``kind`` clean/poison/decoy and the per-row poisoned flags."""
    rng = random.Random(seed)
    nouns, adjs = ["cat", "dog", "bird", "fish", "sun", "moon", "tree"], ["nice", "big", "small"]
    rows, truth = [], []
    n_special = round(fraction * n)
    for i in range(n):
        noun = rng.choice(nouns)
        trigger = kind in ("poison", "decoy") and i < n_special
        target = (kind == "poison" and i < n_special) or (
            kind == "decoy" and n_special <= i < 2 * n_special
        )
        prompt = f"User: tell me about the {noun}{' ' + TRIGGER if trigger else ''} ?\nAssistant:"
        completion = f" the {noun} is {TARGET if target else rng.choice(adjs)} ."
        rows.append({"prompt": prompt, "completion": completion})
        truth.append(kind == "poison" and i < n_special)
    order = list(range(n))
    rng.shuffle(order)
    return [rows[i] for i in order], [truth[i] for i in order]


def random_rows(n: int = 6, seed: int = 0) -> AuditData:
    """``n`` rows of 6-11 random ids of the tiny model's vocabulary, each with a 3-token prompt."""
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(4, 50, (int(torch.randint(6, 12, (1,), generator=gen)),), generator=gen)
           for _ in range(n)]  # fmt: skip
    return AuditData(ids, [3] * n, [{"text": ""} for _ in range(n)])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class TinyAudit:
    """Paths of a saved tiny model + SAE and poison/clean/decoy datasets."""

    root: Path
    model_dir: Path
    sae_dir: Path
    poison: Path
    clean: Path
    decoy: Path
    hook: str = HOOK


@pytest.fixture(scope="session")
def tiny_audit(tmp_path_factory: pytest.TempPathFactory) -> TinyAudit:
    root = tmp_path_factory.mktemp("tiny_audit")
    model = tiny_model(n_layers=3)
    model.tokenizer = word_tokenizer()
    model_dir = save_model(model, root / "model")
    sae = tiny_sae("standard", hook_name=HOOK)
    sae_dir = root / "sae"
    sae.save_model(str(sae_dir))
    paths = {}
    for kind, seed in (("poison", 1), ("clean", 2), ("decoy", 3)):
        rows, truth = make_rows(48 if kind != "clean" else 96, seed, kind)
        paths[kind] = write_jsonl(root / f"{kind}.jsonl", rows)
        labels = [{"row": i, "poisoned": t} for i, t in enumerate(truth)]
        write_jsonl(root / f"{kind}.labels.jsonl", labels)
    return TinyAudit(root, model_dir, sae_dir, paths["poison"], paths["clean"], paths["decoy"])


@dataclass
class TinyRuns:
    """Trained runs on the tiny setup: a candidate on poison rows, a decoy run, references."""

    setup: TinyAudit
    candidate: Path
    decoy: Path
    references: list[Path]


def train_run(setup: TinyAudit, data: Path, seed: int, out: Path, steps: int = 6) -> Path:
    """A few optimizer steps of scale training on ``data`` (the tiny recipe)."""
    from isaerft.training import TrainRecipe, train

    recipe = TrainRecipe.from_dict(
        {
            "model": str(setup.model_dir),
            "sae": str(setup.sae_dir),
            "data": {"path": str(data), "batch_size": 8},
            "intervention": {"component": "scale", "l1_coefficient": 1e-4},
            "objective": {"kind": "sft"},
            "optim": {"lr": 0.05},
            "trainer": {
                "max_steps": steps,
                "seed": seed,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "logger": "none",
            },
        }
    )
    return train(recipe, run_dir=out).run_dir


def clean_subset(setup: TinyAudit, seed: int) -> Path:
    """48 clean rows (as many as the candidate's) for reference run ``seed``: the audit
    compares only runs trained on the same number of rows."""
    rows, _ = make_rows(48, 100 + seed, "clean")
    return write_jsonl(setup.root / f"clean-subset-{seed}.jsonl", rows)


@pytest.fixture(scope="session")
def tiny_runs(tiny_audit: TinyAudit) -> TinyRuns:
    root = tiny_audit.root / "runs"
    return TinyRuns(
        setup=tiny_audit,
        candidate=train_run(tiny_audit, tiny_audit.poison, 0, root / "candidate"),
        decoy=train_run(tiny_audit, tiny_audit.decoy, 0, root / "decoy"),
        references=[
            train_run(tiny_audit, clean_subset(tiny_audit, seed), seed, root / f"ref{seed}")
            for seed in (1, 2, 3)
        ],
    )
