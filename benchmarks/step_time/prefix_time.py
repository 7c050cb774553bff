"""Wall time of a 3-epoch ``isaerft.training`` run with and without prefix caching.

The model has its SAE hook at 2/3 depth (``blocks.4.hook_resid_pre`` of 6 blocks): without the
cache, every step runs the 4 frozen blocks before the hook; with it, they run once per row
(when the cache is built) and each step runs only the last 2. The cached run's time includes
building its cache (a fresh store per run, nothing reused between runs), so the speed-up is
what a user gets on a first run.

The model and SAE are random (timing does not depend on what they learned); the rows and the
word-level tokenizer come from the organism's synthetic language, built in seconds without
training anything.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens.saes import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

PREFIX_TARGET = 1.4
"""The issue's target: prefix caching >= 1.4x faster over 3 epochs at 2/3 hook depth."""


@dataclass(frozen=True)
class PrefixShape:
    """Model, SAE and run size of the prefix-cache measurement."""

    n_layers: int = 6
    hook_layer: int = 4
    d_model: int = 256
    n_heads: int = 8
    expansion: int = 16
    k: int = 32
    rows: int = 512
    batch_size: int = 16
    epochs: float = 3.0

    @property
    def hook_depth(self) -> float:
        """Share of the blocks that run before the hook."""
        return self.hook_layer / self.n_layers


PREFIX_SHAPES = (PrefixShape(d_model=256, expansion=16), PrefixShape(d_model=512, expansion=8))
"""Two widths at 2/3 depth: the organism rows are short (~30 tokens), so at d_model 256 the
fixed per-step costs (Lightning, the optimizer, hooks), which no cache removes, are a large
share of a step; at 512 the matrix work dominates, as it does in real models."""


def build_model(
    shape: PrefixShape, device: str, folder: Path
) -> tuple[HookedTransformer, TopKSAE, Path]:
    """A random model with the synthetic language's tokenizer, its SAE, and a dataset file
    (the tokenizer and the rows are written under ``folder``)."""
    from isaerft.organism import make_dataset
    from isaerft.organism.corpus import Language
    from isaerft.organism.tokenizer import load_tokenizer, train_tokenizer

    docs = [d.text for d in Language(0).documents(3000, "prefix-time")]
    # Saved and reloaded, as the organism does: TransformerLens needs a tokenizer with a path.
    train_tokenizer(docs).save_pretrained(str(folder / "tokenizer"))
    tokenizer = load_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=shape.n_layers,
        d_model=shape.d_model,
        n_ctx=128,
        d_head=shape.d_model // shape.n_heads,
        n_heads=shape.n_heads,
        d_mlp=4 * shape.d_model,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        default_prepend_bos=True,
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False).to(device)
    sae = TopKSAE(
        TopKSAEConfig(d_in=shape.d_model, d_sae=shape.expansion * shape.d_model, k=shape.k)
    )
    sae.cfg.metadata.hook_name = f"blocks.{shape.hook_layer}.hook_resid_pre"
    sae = sae.to(device)
    data = folder / "rows.jsonl"
    make_dataset("clean", data, n=shape.rows, seed=0)
    return model, sae, data


def time_run(
    model: HookedTransformer,
    sae: TopKSAE,
    data: Path,
    shape: PrefixShape,
    cached: bool,
    device: str,
) -> dict[str, float]:
    """One 3-epoch run; ``{"total_s", "fit_s", "setup_s", "steps"}``."""
    from isaerft.training import PrefixCacheStore, TrainRecipe, train
    from isaerft.training.resolve import accelerator_for

    recipe = TrainRecipe.from_dict(
        {
            "model": "<in-memory>",
            "sae": ["<in-memory>"],
            "data": {"path": str(data), "batch_size": shape.batch_size},
            "intervention": {"component": "scale", "l1_coefficient": 2e-3},
            "objective": {"kind": "sft"},
            "trainer": {
                "epochs": shape.epochs,
                "prefix_cache": cached,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "logger": "none",
                "resume": "never",
                "accelerator": accelerator_for(device),
            },
        }
    )
    with tempfile.TemporaryDirectory(prefix="isaerft-prefix-run-") as run_dir:
        started = time.perf_counter()
        result = train(
            recipe, model=model, saes=[sae], prefix_cache=PrefixCacheStore(), run_dir=run_dir
        )
        total = time.perf_counter() - started
    return {
        "total_s": total,
        "fit_s": float(result.summary["fit_time_s"]),
        "setup_s": float(result.summary["setup_time_s"]),
        "steps": int(result.summary["steps"]),
    }


def measure_shape(shape: PrefixShape, device: str, repeats: int) -> dict[str, Any]:
    """Interleaved uncached/cached 3-epoch runs of one shape; medians and the speed-ups."""
    runs: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="isaerft-prefix-time-") as folder:
        model, sae, data = build_model(shape, device, Path(folder))
        for _ in range(repeats):  # interleaved: machine drift hits both alike
            for name in ("uncached", "cached"):
                runs[name].append(time_run(model, sae, data, shape, name == "cached", device))
    median = {
        name: {
            key: statistics.median(r[key] for r in rs) for key in ("total_s", "fit_s", "setup_s")
        }
        for name, rs in runs.items()
    }
    speedup_total = median["uncached"]["total_s"] / median["cached"]["total_s"]
    return {
        "shape": {
            **asdict(shape),
            "hook_depth": shape.hook_depth,
            "hook_name": sae.cfg.metadata.hook_name,
        },
        "runs": runs,
        "median": median,
        "ratios": {
            "prefix_cache_speedup_total": speedup_total,
            "prefix_cache_speedup_fit": median["uncached"]["fit_s"] / median["cached"]["fit_s"],
        },
        "target": {
            "prefix_cache_speedup_total_min": PREFIX_TARGET,
            "met": speedup_total >= PREFIX_TARGET,
        },
    }


def measure_prefix_cache(
    shapes: Sequence[PrefixShape] = PREFIX_SHAPES, device: str = "cpu", repeats: int = 2
) -> dict[str, Any]:
    """:func:`measure_shape` for every shape (all at 2/3 depth, different widths)."""
    return {
        "benchmark": "step_time_prefix_cache",
        "repeats": repeats,
        "shapes": [measure_shape(shape, device, repeats) for shape in shapes],
    }
