"""SAEs at more sites of a built organism, for multi-site fine-tuning and audits.

An organism is built with one SAE (``sae/``, at ``Organism.hook_name``). :func:`site_sae` trains
another one at any residual hook of the same frozen model, with the organism's own SAE settings
on the organism's own SAE text, and caches it inside the organism folder::

    sites/<hook>/        SAELens folder (isaerft.load_sae), written whole or not at all

The first call per hook trains (tiny: ~20 s, small: a few minutes on 2 cores); later calls load.
The training runs under the build's fixed threads and deterministic kernels, so every machine
trains the same site SAE.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft.organism.build import (
    OrganismConfig,
    build_lock,
    build_settings,
    corpus_texts,
    sae_site_config,
    say,
)
from isaerft.organism.handle import Organism
from isaerft.organism.sae import collect_activations, save_sae, train_sae
from isaerft.organism.tokenizer import encode_batch, load_tokenizer


def residual_hooks(org: Organism) -> list[str]:
    """Every layer's residual stream of ``org``'s model: each block's input, then the last
    block's output (``blocks.0.hook_resid_pre`` ... ``blocks.<n-1>.hook_resid_post``)."""
    n = int(org.meta["config"]["lm"]["n_layers"])
    return [f"blocks.{i}.hook_resid_pre" for i in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]


def site_sae_dir(org: Organism, hook: str) -> Path:
    """Where :func:`site_sae` keeps ``org``'s SAE at ``hook`` (the build's own ``sae/`` for the
    organism's hook)."""
    return org.sae_dir if hook == org.hook_name else org.path / "sites" / hook


def site_sae(org: Organism, hook: str, progress: bool = True) -> SAE[Any]:
    """``org``'s SAE at ``hook`` (e.g. ``blocks.0.hook_resid_pre``), trained once and cached.

    Refuses a hook that is not a residual-stream hook of the organism's model, in one line.
    """
    from isaerft.loading import load_sae

    cfg = OrganismConfig.from_dict(org.meta["config"])
    site = sae_site_config(cfg, hook)  # validates the hook against the model
    folder = site_sae_dir(org, hook)
    if (folder / "cfg.json").is_file():
        return load_sae(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(folder.parent / f".{folder.name}.lock", progress):
        if (folder / "cfg.json").is_file():
            return load_sae(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            say(progress, f"training a site SAE of {org.key} on {hook}")
            with build_settings():
                model = org.load_model()
                tok = load_tokenizer(org.model_dir)
                texts = corpus_texts(cfg, org.path / "corpus.txt", tmp)["sae_text"]
                acts, _ = collect_activations(model, encode_batch(tok, texts), hook)
                sae = train_sae(
                    acts, site, model_name=str(org.meta["model_name"]),
                    context_size=cfg.lm.n_ctx, seed=cfg.seed, progress=progress,
                )  # fmt: skip
            save_sae(sae, tmp / "sae")
            os.replace(tmp / "sae", folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_sae(folder)
