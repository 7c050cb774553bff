"""SAEs at more sites of a built organism, for multi-site fine-tuning and audits.

An organism is built with one SAE (``sae/``, at ``Organism.hook_name``). :func:`site_sae` trains
another one at any residual hook of the same frozen model, with the organism's own SAE settings
on the organism's own SAE text, and caches it inside the organism folder::

    sites/<hook>/        SAELens folder (isaerft.load_sae), written whole or not at all
    sites/<hook>/labels.jsonl   its ground-truth labels (+ matrix sidecar), see site_labels

The first call per hook trains (tiny: ~20 s, small: a few minutes on 2 cores); later calls load.
The training runs under the build's fixed threads and deterministic kernels, so every core count
trains the same site SAE on one kind of processor. :func:`site_labels` labels a site SAE the way
the build labels its own, and :func:`write_site_labels` joins several sites' labels into one
file for a multi-site audit (each row names its ``hookName``, which the audit matches to the
run's sites).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sae_lens import SAE

from isaerft._io import read_label_records, write_text
from isaerft.organism.build import (
    OrganismConfig,
    build_lock,
    build_settings,
    corpus_texts,
    sae_site_config,
    say,
)
from isaerft.organism.handle import Organism
from isaerft.organism.labelling import label_sae
from isaerft.organism.labels import GROUND_TRUTH, matrix_path
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


def site_labels_path(org: Organism, hook: str) -> Path:
    """Where :func:`site_labels` keeps the labels of ``org``'s SAE at ``hook`` (the build's own
    ``labels.jsonl`` for the organism's hook)."""
    return org.labels_path if hook == org.hook_name else site_sae_dir(org, hook) / "labels.jsonl"


def site_labels(org: Organism, hook: str, progress: bool = True) -> Path:
    """The ground-truth label file of ``org``'s SAE at ``hook``, computed once (like the
    build's: each latent's token-level AUROC against every word and concept on the organism's
    held-out text) and cached next to the site SAE, sidecar first, both written atomically."""
    path = site_labels_path(org, hook)
    if path.is_file() and matrix_path(path).is_file():
        return path
    sae = site_sae(org, hook, progress)
    folder = site_sae_dir(org, hook)
    with build_lock(folder.parent / f".{folder.name}.lock", progress):
        if path.is_file() and matrix_path(path).is_file():
            return path
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            say(progress, f"labelling the site SAE of {org.key} on {hook}")
            cfg = OrganismConfig.from_dict(org.meta["config"])
            with build_settings():
                model = org.load_model()
                tok = load_tokenizer(org.model_dir)
                texts = corpus_texts(cfg, org.path / "corpus.txt", tmp)["eval_text"]
                name = str(org.meta["model_name"])
                ids = encode_batch(tok, texts)
                label_sae(tmp / path.name, model, sae, ids, name, hook, concepts=cfg.corpus is None)
            # The JSONL last: a label file is only ever seen with its sidecar.
            os.replace(matrix_path(tmp / path.name), matrix_path(path))
            os.replace(tmp / path.name, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_site_labels(org: Organism, hooks: list[str], out: str | Path) -> Path:
    """One label file with the labels of ``org``'s SAEs at ``hooks`` (each row keeps its
    ``hookName``), for an audit of a run spliced at those sites. Replaces ``out`` only when it
    is an organism label file itself; any other file there is refused, never overwritten."""
    out = Path(out)
    if out.exists() and not _is_organism_labels(out):
        raise ValueError(f"{out} exists and is not an organism label file; pick another path")
    rows = [row for hook in hooks for row in read_label_records(site_labels(org, hook))]
    return write_text(out, "".join(json.dumps(row) + "\n" for row in rows))


def _is_organism_labels(path: Path) -> bool:
    try:
        rows = read_label_records(path)
    except (OSError, ValueError):
        return False
    return bool(rows) and all(r.get("explanationModelName") == GROUND_TRUTH for r in rows)
