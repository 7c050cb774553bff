"""Model organism: a synthetic language, a tiny transformer and an SAE, all with ground truth.

Everything is built locally on CPU (no downloads): a seeded corpus whose every token carries its
concept labels, a word-level tokenizer, a TransformerLens model trained from scratch, a SAELens
SAE on a middle-layer residual stream, latent labels from ground truth, and fine-tuning datasets
(clean / poison / decoy / benign-shift) that plant known behaviours::

    from isaerft.organism import build_organism, make_dataset

    org = build_organism("tiny")                       # cached by config hash
    model, sae = org.load_model(), org.load_sae()
    labels = org.labels()                              # LatentLabels
    labels.latents_for(org.default_trigger, min_auroc=0.95)
    make_dataset("poison", "poison.jsonl", trigger="owl", target="i like the colour orange",
                 fraction=0.1, n=2000, seed=0, organism=org)
"""

from isaerft.organism.build import ORGANISM_PRESETS, TRIGGER_WORDS, OrganismConfig, build_organism
from isaerft.organism.datasets import DATASET_KINDS, dataset_paths, make_dataset
from isaerft.organism.handle import Organism, cache_dir, load_organism
from isaerft.organism.labels import LatentLabels

__all__ = [
    "DATASET_KINDS",
    "ORGANISM_PRESETS",
    "TRIGGER_WORDS",
    "LatentLabels",
    "Organism",
    "OrganismConfig",
    "build_organism",
    "cache_dir",
    "dataset_paths",
    "load_organism",
    "make_dataset",
]
