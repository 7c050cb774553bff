"""Label an organism's SAE from ground truth: run the held-out text through the model, encode
it with the SAE, and score each latent as a detector of every word (and, for the synthetic
language, every concept of the lexicon); :mod:`isaerft.organism.labels` holds the statistics and
the label file's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer

from isaerft.organism import lexicon as lx
from isaerft.organism.labels import LatentLabels, label_stats, write_labels
from isaerft.organism.sae import collect_activations
from isaerft.organism.tokenizer import token_word


def label_sae(
    out: Path,
    model: HookedTransformer,
    sae: SAE[Any],
    eval_ids: list[list[int]],
    name: str,
    hook: str,
    *,
    concepts: bool,
) -> LatentLabels:
    """Ground-truth labels of ``sae`` (at ``hook`` of ``model``), written to ``out`` (JSONL +
    matrix sidecar): each latent's token-level AUROC against every word and, with ``concepts``
    (the synthetic language; real text has no concept ground truth), every lexicon concept, on
    the held-out texts ``eval_ids``."""
    assert model.tokenizer is not None
    acts, ids = collect_activations(model, eval_ids, hook)
    with torch.no_grad():
        feats = sae.encode(acts)
    vocab = model.tokenizer.convert_ids_to_tokens(list(range(len(model.tokenizer))))
    words = [token_word(t) for t in vocab]
    members: dict[str, list[int]] = {}
    if concepts:
        for i, w in enumerate(words):
            for c in lx.LEXICON.concepts(w):
                members.setdefault(c, []).append(i)
    stats = label_stats(feats, ids, words, members)
    examples = {c: [words[i] for i in ids_[:6]] for c, ids_ in members.items()}
    layer, _, point = hook.removeprefix("blocks.").partition(".")
    write_labels(
        out,
        stats,
        model_id=name,
        layer=f"{layer}-{point.removeprefix('hook_').replace('_', '-')}",  # e.g. 1-resid-pre
        hook_name=hook,
        concept_examples=examples,
    )
    return LatentLabels.load(out)
