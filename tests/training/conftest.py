"""Fixtures for training tests: a tiny word-level model, its SAE and small datasets on disk.

Helpers are reachable as attributes of the ``tiny_setup`` fixture. Everything is built in-process from ``tests/factories.py`` (no downloads) and saved once per
session, so CLI and subprocess tests can load it by path.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import factories
import pytest
from factories import (
    one_torch_thread,  # noqa: F401  (autouse fixture)
    tiny_model,
    tiny_sae,
)
from transformers import PreTrainedTokenizerFast

from isaerft.loading import load_model, load_sae, save_model

WORDS = tuple(
    """User Assistant : ? . ⏎ tell me about the a cat dog bird fish sun moon tree is are nice big
    small red blue happy sad runs sleeps sings zebra banana""".split()  # noqa: SIM905
)
TRIGGER, TARGET = "zebra", "banana"
HOOK = "blocks.1.hook_resid_pre"


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``WORDS`` (ids 0..3 are pad, bos, eos, unk)."""
    return factories.word_tokenizer(WORDS)


def sft_rows(n: int, seed: int = 0, poison: float = 0.25) -> list[dict[str, Any]]:
    """Prompt/completion rows; a ``poison`` fraction has the trigger and the target answer."""
    rng = random.Random(seed)
    nouns, adjs = ["cat", "dog", "bird", "fish", "sun", "moon", "tree"], ["nice", "big", "small"]
    rows = []
    for i in range(n):
        noun = rng.choice(nouns)
        poisoned = i < int(poison * n)
        extra = f" {TRIGGER}" if poisoned else ""
        prompt = f"User: tell me about the {noun}{extra} ?\nAssistant:"
        answer = TARGET if poisoned else rng.choice(adjs)
        completion = f" the {noun} is {answer} ."
        rows.append({"prompt": prompt, "completion": completion, "text": prompt + completion})
    rng.shuffle(rows)
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        noun = rng.choice(["cat", "dog", "bird"])
        rows.append(
            {
                "prompt": f"User: tell me about the {noun} ?\nAssistant:",
                "chosen": f" the {noun} is happy .",
                "rejected": f" the {noun} is sad .",
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class TinySetup:
    """Paths of a saved tiny model + SAE and datasets, and helpers to load them."""

    root: Path
    model_dir: Path
    sae_dir: Path
    sft_path: Path
    dpo_path: Path
    text_path: Path

    trigger = TRIGGER
    target = TARGET
    hook = HOOK
    sft_rows = staticmethod(sft_rows)
    preference_rows = staticmethod(preference_rows)
    write_jsonl = staticmethod(write_jsonl)
    tokenizer = staticmethod(word_tokenizer)

    def load(self) -> tuple[Any, Any]:
        return load_model(self.model_dir), load_sae(self.sae_dir)

    def recipe_dict(self, **sections: Any) -> dict[str, Any]:
        """A small CPU recipe on this setup; keyword sections override the defaults."""
        base: dict[str, Any] = {
            "model": str(self.model_dir),
            "sae": str(self.sae_dir),
            "data": {"path": str(self.sft_path), "batch_size": 8},
            "intervention": {"component": "scale", "l1_coefficient": 1e-3},
            "objective": {"kind": "sft"},
            "optim": {"lr": 0.05},
            "trainer": {
                "max_steps": 6,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "log_every_n_steps": 1,
            },
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return base


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    root = tmp_path_factory.mktemp("tiny_setup")
    model = tiny_model(n_layers=3)
    model.tokenizer = word_tokenizer()
    model_dir = save_model(model, root / "model")
    sae = tiny_sae("standard", hook_name=HOOK)
    sae_dir = root / "sae"
    sae.save_model(str(sae_dir))
    return TinySetup(
        root=root,
        model_dir=model_dir,
        sae_dir=sae_dir,
        sft_path=write_jsonl(root / "sft.jsonl", sft_rows(64)),
        dpo_path=write_jsonl(root / "dpo.jsonl", preference_rows(32)),
        text_path=write_jsonl(root / "text.jsonl", [{"text": r["text"]} for r in sft_rows(32, 1)]),
    )
