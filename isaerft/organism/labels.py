"""Latent labels from ground truth: which word or concept each SAE latent detects, by token AUROC.

For every latent and every label (each word seen often enough, and each concept of the lexicon),
the token-level AUROC of the latent's activation as a detector of the label is computed from
ranks (ties averaged), using the sparsity of the activations. Each latent is described by the
label it detects best (highest F1 of "the latent fires" against the label, so a latent that fires
on every animal is called ``animal`` rather than ``owl``), with that label's AUROC as ``score``.

Written as a Neuronpedia-shaped explanation export (one JSON object per line, ``modelId``,
``layer``, ``index``, ``description`` ...) plus a sidecar ``<name>.matrix.safetensors`` holding
the full AUROC and precision matrices, which :class:`LatentLabels` uses to answer
"which latents detect X with AUROC >= t".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from isaerft._io import read_label_records, read_safetensors, write_safetensors, write_text

WORD, CONCEPT = "word:", "concept:"
GROUND_TRUTH = "isaerft-ground-truth"
"""The ``explanationModelName`` of every label the organism writes (from ground truth, not a
language model)."""


@dataclass(frozen=True)
class LabelStats:
    """Per (label, latent) detection statistics, ``[n_labels, d_sae]`` each.

    ``precision`` is activation-weighted (the share of the latent's total activation that falls
    on the label's tokens); ``firing_precision`` counts firings instead; ``recall`` is the share
    of the label's tokens on which the latent fires.
    """

    names: list[str]
    auroc: torch.Tensor
    precision: torch.Tensor
    firing_precision: torch.Tensor
    recall: torch.Tensor
    counts: torch.Tensor
    firing_rate: torch.Tensor
    mean_activation: torch.Tensor


@torch.no_grad()
def label_stats(
    feats: torch.Tensor,
    word_ids: torch.Tensor,
    word_names: Sequence[str],
    concepts: Mapping[str, Sequence[int]],
    min_count: int = 5,
) -> LabelStats:
    """AUROC/precision/recall of every latent (columns of ``feats``) for every label.

    ``word_ids[i]`` is the class (token id) of row ``i``; ``word_names[c]`` names class ``c``;
    ``concepts`` maps a concept to the classes that carry it. Words seen fewer than
    ``min_count`` times are not labels (their AUROC would be noise).
    """
    n_tok, d_sae = feats.shape
    n_cls = len(word_names)
    counts_w = torch.bincount(word_ids, minlength=n_cls).double()
    # Sparse entries (token, latent, value) sorted by latent then value -> rank among nonzeros.
    tok_idx, lat_idx = (feats > 0).nonzero(as_tuple=True)
    vals = feats[tok_idx, lat_idx]
    order = torch.sort(vals, stable=True).indices
    order = order[torch.sort(lat_idx[order], stable=True).indices]
    tok_idx, lat_idx = tok_idx[order], lat_idx[order]
    nnz = torch.bincount(lat_idx, minlength=d_sae)
    starts = torch.cumsum(nnz, 0) - nnz
    rank_nz = torch.arange(len(lat_idx)) - starts[lat_idx] + 1
    zeros = (n_tok - nnz).double()
    cls = word_ids[tok_idx]
    flat = cls * d_sae + lat_idx
    rank_sum = torch.zeros(n_cls * d_sae, dtype=torch.float64)
    rank_sum.index_add_(0, flat, (zeros[lat_idx] + rank_nz).double())
    fire = torch.zeros(n_cls * d_sae, dtype=torch.float64)
    fire.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
    act_sum = torch.zeros(n_cls * d_sae, dtype=torch.float64)
    act_sum.index_add_(0, flat, feats[tok_idx, lat_idx].double())
    rank_sum, fire, act_sum = (x.view(n_cls, d_sae) for x in (rank_sum, fire, act_sum))

    keep = [c for c in range(n_cls) if counts_w[c] >= min_count]
    names = [WORD + word_names[c] for c in keep]
    member_rows = []
    for concept, members in concepts.items():
        row = torch.zeros(n_cls, dtype=torch.float64)
        row[list(members)] = 1.0
        if (row * counts_w).sum() >= min_count:
            names.append(CONCEPT + concept)
            member_rows.append(row)
    member = torch.stack(member_rows) if member_rows else torch.zeros(0, n_cls, dtype=torch.float64)

    def per_label(x: torch.Tensor) -> torch.Tensor:  # words are rows; concepts sum their words
        return torch.cat([x[keep], member @ x])

    n_pos = per_label(counts_w[:, None])[:, 0]  # [n_labels]
    n_fire_pos = per_label(fire)  # [n_labels, d_sae]
    n_zero_pos = n_pos[:, None] - n_fire_pos
    ranks = per_label(rank_sum) + n_zero_pos * (zeros[None, :] + 1) / 2
    n_neg = n_tok - n_pos
    auroc = (ranks - n_pos[:, None] * (n_pos[:, None] + 1) / 2) / (n_pos[:, None] * n_neg[:, None])
    fired_total = nnz.double().clamp(min=1)
    mass = act_sum.sum(0)
    return LabelStats(
        names=names,
        auroc=auroc.float(),
        precision=(per_label(act_sum) / mass.clamp(min=1e-12)[None, :]).float(),
        firing_precision=(n_fire_pos / fired_total[None, :]).float(),
        recall=(n_fire_pos / n_pos[:, None]).float(),
        counts=n_pos.float(),
        firing_rate=(nnz.double() / n_tok).float(),
        mean_activation=(mass / fired_total).float(),
    )


def _describe(label: str, examples: Sequence[str]) -> str:
    if label.startswith(WORD):
        return f'the word "{label[len(WORD) :]!s}"'.replace("\n", "\\n")
    concept = label[len(CONCEPT) :]
    return f"{concept} words (e.g. {', '.join(examples[:4])})" if examples else f"{concept} words"


def write_labels(
    path: str | Path,
    stats: LabelStats,
    *,
    model_id: str,
    layer: str,
    hook_name: str,
    concept_examples: Mapping[str, Sequence[str]] | None = None,
    top: int = 8,
) -> Path:
    """Write the Neuronpedia-shaped JSONL (and its matrix sidecar) for ``stats``."""
    path = Path(path)
    examples = concept_examples or {}
    f1 = 2 * stats.precision * stats.recall / (stats.precision + stats.recall).clamp(min=1e-9)
    lines = []
    for j in range(stats.auroc.shape[1]):
        rate = float(stats.firing_rate[j])
        best = int(f1[:, j].argmax())
        label = stats.names[best]
        dead = rate == 0.0
        top_idx = stats.auroc[:, j].argsort(descending=True)[:top].tolist()
        lines.append(
            {
                "modelId": model_id,
                "layer": layer,
                "index": str(j),
                "description": "dead latent (never fires on held-out text)"
                if dead
                else _describe(label, examples.get(label[len(CONCEPT) :], ())),
                "explanationModelName": GROUND_TRUTH,
                "typeName": "ground_truth_auroc",
                "score": 0.5 if dead else round(float(stats.auroc[best, j]), 4),
                "label": None if dead else label,
                "concept": label[len(CONCEPT) :]
                if label.startswith(CONCEPT) and not dead
                else None,
                "word": label[len(WORD) :] if label.startswith(WORD) and not dead else None,
                "auroc": round(float(stats.auroc[best, j]), 4),
                "precision": round(float(stats.precision[best, j]), 4),
                "firing_precision": round(float(stats.firing_precision[best, j]), 4),
                "recall": round(float(stats.recall[best, j]), 4),
                "f1": round(float(f1[best, j]), 4),
                "firing_rate": round(rate, 6),
                "mean_activation": round(float(stats.mean_activation[j]), 4),
                "hookName": hook_name,
                "top_labels": [
                    {"label": stats.names[i], "auroc": round(float(stats.auroc[i, j]), 4)}
                    for i in top_idx
                ],
            }
        )
    text = "".join(json.dumps(line) + "\n" for line in lines)
    write_text(path, text)
    write_safetensors(
        matrix_path(path),
        {"auroc": stats.auroc.half(), "precision": stats.precision.half(), "counts": stats.counts},
        metadata={"labels": json.dumps(stats.names)},
    )
    return path


def matrix_path(labels_path: str | Path) -> Path:
    """The sidecar holding the full AUROC/precision matrices of a labels JSONL."""
    p = Path(labels_path)
    return p.with_name(p.name.removesuffix(".jsonl") + ".matrix.safetensors")


GT_MIN_AUROC, GT_MIN_PRECISION, GT_FALLBACK_AUROC = 0.95, 0.5, 0.8
"""The ground-truth rule of :meth:`LatentLabels.ground_truth_latents` (and of every benchmark
that scores naming against it)."""


class LatentLabels:
    """Ground-truth latent labels: descriptions, and which latents detect a word or concept.

    Labels are ``"word:owl"`` or ``"concept:animal"``; a bare ``"owl"`` means the word if the
    word is a label, else the concept. A multi-word phrase (``"you should visit the castle"``)
    stands for its most distinctive word: the one with the most precise latent among latents of
    AUROC >= 0.95 (ties: the rarest).
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        names: list[str],
        auroc: torch.Tensor,
        precision: torch.Tensor,
        counts: torch.Tensor | None = None,
    ) -> None:
        self.records = records
        self.names = names
        self.auroc = auroc.float()
        self.precision = precision.float()
        self.counts = counts if counts is not None else torch.zeros(len(names))
        self._row = {n: i for i, n in enumerate(names)}

    @classmethod
    def load(cls, path: str | Path) -> LatentLabels:
        """Read a labels JSONL written by :func:`write_labels` (and its matrix sidecar)."""
        path = Path(path)
        records = read_label_records(path)
        records.sort(key=lambda r: int(r["index"]))
        from safetensors import safe_open

        with safe_open(str(matrix_path(path)), framework="pt") as fh:
            names = json.loads((fh.metadata() or {})["labels"])
        tensors = read_safetensors(matrix_path(path))
        return cls(records, names, tensors["auroc"], tensors["precision"], tensors.get("counts"))

    @property
    def d_sae(self) -> int:
        """Number of latents."""
        return len(self.records)

    def resolve(self, label: str) -> str:
        """Canonical ``word:``/``concept:`` form of ``label`` (raises ``KeyError`` if unknown)."""
        for cand in (label, WORD + label, CONCEPT + label):
            if cand in self._row:
                return cand
        words = [WORD + w for w in label.split() if WORD + w in self._row]
        if len(label.split()) > 1 and words:
            return max(words, key=self._distinctiveness)
        raise KeyError(f"{label!r} is not a label (too rare in held-out text, or not a word)")

    def _distinctiveness(self, name: str) -> tuple[float, float]:
        row = self._row[name]
        good = self.auroc[row] >= 0.95
        best = float((self.precision[row] * good).max()) if bool(good.any()) else 0.0
        return best, -float(self.counts[row])

    def has_label(self, label: str) -> bool:
        """Whether ``label`` (word or concept) can be asked about."""
        try:
            self.resolve(label)
        except KeyError:
            return False
        return True

    def description(self, index: int) -> str:
        """Readable description of latent ``index``, e.g. ``the word "owl"``."""
        return str(self.records[index]["description"])

    def record(self, index: int) -> dict[str, Any]:
        """The full JSONL record of latent ``index``."""
        return self.records[index]

    def auroc_for(self, label: str) -> torch.Tensor:
        """AUROC of every latent as a detector of ``label`` (``[d_sae]``)."""
        return self.auroc[self._row[self.resolve(label)]]

    def latents_for(
        self, label: str, min_auroc: float = 0.95, min_precision: float = 0.0
    ) -> list[int]:
        """Latents detecting ``label`` with AUROC >= ``min_auroc`` (best first).

        ``min_precision`` additionally requires that this share of the latent's activation mass
        be on ``label`` (use e.g. 0.5 to get *dedicated* latents, not a whole concept's latent).
        """
        row = self._row[self.resolve(label)]
        ok = (self.auroc[row] >= min_auroc) & (self.precision[row] >= min_precision)
        idx = ok.nonzero().flatten()
        return idx[self.auroc[row, idx].argsort(descending=True)].tolist()

    def best_latent(self, label: str) -> tuple[int, float]:
        """``(latent, auroc)`` of the best detector of ``label``."""
        scores = self.auroc_for(label)
        j = int(scores.argmax())
        return j, float(scores[j])

    def ground_truth_latents(self, label: str) -> list[int]:
        """The latents ground truth ties to ``label``: those detecting it with AUROC >=
        :data:`GT_MIN_AUROC` that put at least :data:`GT_MIN_PRECISION` of their activation mass
        on it (best first); when none does, its best detector if that reaches
        :data:`GT_FALLBACK_AUROC`. A latent described by another word counts when it detects
        this one (``the word "wanted"`` is the organism's best detector of ``like``)."""
        hits = self.latents_for(label, GT_MIN_AUROC, GT_MIN_PRECISION)
        if hits:
            return hits
        best, score = self.best_latent(label)
        return [best] if score >= GT_FALLBACK_AUROC else []
