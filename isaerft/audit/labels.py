"""Readable latent names from a Neuronpedia-style explanation export (JSONL).

Each line names one latent: ``{"modelId", "layer", "index", "description", ...}`` where
``modelId/layer`` is the SAE's Neuronpedia id (``sae.cfg.metadata.neuronpedia_id``, e.g.
``gemma-2-2b/12-gemmascope-res-16k``). The organism's label files have the same shape plus a
``score`` (token-level AUROC of the concept), the row's ``hookName`` and ``top_labels`` (the
latent's best-scored labels, ``{"label": "word:bad", "auroc": 0.87}``): a concept latent's
description shows a few examples (``sentiment words (e.g. nice, lovely, great, amazing)``),
its ``top_labels`` the words it detects best (``bad``, ``awful``), and both count as naming a
word (:meth:`LabelSet.mentioning`). A file is matched to each audited site by that id (or,
for SAEs without one, by ``hookName`` when the file labels several sites); a file written for
another SAE fails loudly instead of naming the wrong latents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isaerft._io import read_label_records

TEMPLATE_SHARE = 0.05
"""A word in more of a site's descriptions than this share is template, not a name ..."""
TEMPLATE_MIN = 3
"""... and in more than this many (a hand-made handful of labels has no template)."""
MIN_READS_SCORE = 0.75
"""A word of a latent's ``top_labels`` names it only at this AUROC or more: a weaker detector
is worse evidence than the audited rows' own best detector of the word (the fallback)."""


@dataclass(frozen=True)
class LatentLabel:
    """One latent's explanation."""

    description: str
    score: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    reads: tuple[tuple[str, float], ...] = ()
    """Words the file scores the latent as detecting (``top_labels``), with their AUROC."""


class LabelSet:
    """Latent labels per site: ``labels.get(hook_name, index)``.

    Build one with :meth:`load`, which checks the file against the sites' SAEs.
    """

    def __init__(self, by_site: dict[str, dict[int, LatentLabel]], source: str = "") -> None:
        self.by_site = by_site
        self.source = source
        self._mentions: dict[str, dict[str, list[int]]] = {}

    def get(self, hook_name: str, index: int) -> LatentLabel | None:
        """The label of latent ``index`` at ``hook_name``, if the file has one."""
        return self.by_site.get(hook_name, {}).get(int(index))

    def description(self, hook_name: str, index: int) -> str:
        """The description, or ``""`` when the latent has no label."""
        label = self.get(hook_name, index)
        return label.description if label else ""

    def mentioning(self, hook_name: str, word: str) -> list[int]:
        """Latents at ``hook_name`` that name ``word`` (a whole word, any case), best first:
        their description mentions it, or their ``reads`` list it with AUROC >=
        :data:`MIN_READS_SCORE`. Each is ranked by its score for the word (the ``reads`` AUROC
        where listed, else the description's score).

        A word in more than :data:`TEMPLATE_SHARE` (and :data:`TEMPLATE_MIN`) of the site's
        descriptions (``the``, ``word`` in ``the word "owl"``) is the labeller's template, not
        a name: descriptions do not mention it (a ``reads`` entry still does).
        """
        if hook_name not in self._mentions:
            self._mentions[hook_name] = self._index_mentions(hook_name)
        return self._mentions[hook_name].get(word.lower(), [])

    def _index_mentions(self, hook_name: str) -> dict[str, list[int]]:
        site = self.by_site.get(hook_name, {})
        described: dict[str, list[int]] = {}
        for j, label in site.items():
            for w in set(re.findall(r"\w+", label.description.lower())):
                described.setdefault(w, []).append(j)
        limit = max(TEMPLATE_MIN, TEMPLATE_SHARE * len(site))
        scored: dict[str, dict[int, float]] = {
            w: {j: site[j].score or 0.0 for j in js}
            for w, js in described.items()
            if len(js) <= limit
        }
        for j, label in site.items():
            for w, auroc in label.reads:
                if auroc >= MIN_READS_SCORE:
                    mine = scored.setdefault(w.lower(), {})
                    mine[j] = max(mine.get(j, 0.0), auroc)
        return {w: sorted(js, key=lambda j: -js[j]) for w, js in scored.items()}

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_site.values())

    @classmethod
    def empty(cls) -> LabelSet:
        """No labels (every description is ``""``)."""
        return cls({})

    @classmethod
    def load(cls, path: str | Path, sites: Sequence[dict[str, Any]]) -> LabelSet:
        """Read a label file and assign its rows to ``sites`` (artifact site records with
        ``hook_name``, ``d_sae``, ``neuronpedia_id``, ``sae_model_name``, ``sae_fingerprint``).

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is malformed or written for another SAE.
        """
        path = Path(path)
        rows = _read(path)
        sources: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            sources.setdefault((str(row.get("modelId", "")), str(row.get("layer", ""))), []).append(
                row
            )
        by_site = {}
        for site in sites:
            chosen = _rows_for_site(path, site, sources, len(sites))
            by_site[site["hook_name"]] = _index(path, site, chosen)
        return cls(by_site, str(path))


def _read(path: Path) -> list[dict[str, Any]]:
    rows = read_label_records(path)
    if not rows:
        raise ValueError(f"label file {path} is empty")
    return rows


def _rows_for_site(
    path: Path,
    site: dict[str, Any],
    sources: dict[tuple[str, str], list[dict[str, Any]]],
    n_sites: int,
) -> list[dict[str, Any]]:
    hook = site["hook_name"]
    known = sorted(f"{m}/{layer}" for m, layer in sources)
    np_id = site.get("neuronpedia_id")
    if np_id:
        model_id, _, layer = str(np_id).partition("/")
        if (model_id, layer) in sources:
            return sources[(model_id, layer)]
        raise ValueError(
            f"label file {path} is for SAE(s) {known}, not the SAE at {hook!r} (Neuronpedia id "
            f"{np_id!r}); pass the label file of the SAE the run was trained with"
        )
    by_hook = [row for rows in sources.values() for row in rows if row.get("hookName") == hook]
    if by_hook and (len(sources) != 1 or n_sites != 1):
        # Files that name each row's hook (the organism's, see isaerft.organism.sites) label
        # several sites at once without Neuronpedia ids.
        return by_hook
    if len(sources) != 1 or n_sites != 1:
        raise ValueError(
            f"cannot tell which labels of {path} (sources {known}) belong to the SAE at {hook!r}: "
            "it has no cfg.metadata.neuronpedia_id; set it to 'modelId/layer' as in the file"
        )
    (model_id, _), rows = next(iter(sources.items()))
    sae_model = site.get("sae_model_name")
    if model_id and sae_model and model_id != sae_model:
        raise ValueError(
            f"label file {path} is for model {model_id!r} but the SAE at {hook!r} belongs to "
            f"model {sae_model!r}; pass the label file of the SAE the run was trained with"
        )
    return rows


def _index(path: Path, site: dict[str, Any], rows: list[dict[str, Any]]) -> dict[int, LatentLabel]:
    d_sae, out = int(site["d_sae"]), {}
    for row in rows:
        fingerprint = row.get("sae_fingerprint")
        if fingerprint and site.get("sae_fingerprint") and fingerprint != site["sae_fingerprint"]:
            raise ValueError(
                f"label file {path} was written for another SAE (fingerprint "
                f"{str(fingerprint)[:19]}... vs {str(site['sae_fingerprint'])[:19]}...)"
            )
        try:
            index = int(row["index"])
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"label file {path}: index {row['index']!r} is not an integer"
            ) from err
        if not 0 <= index < d_sae:
            raise ValueError(
                f"label file {path} names latent {index} but the SAE at {site['hook_name']!r} has "
                f"only {d_sae} latents: the labels are for another SAE"
            )
        score = row.get("score")
        extra = tuple(
            (k, v)
            for k, v in row.items()
            if k not in ("modelId", "layer", "index", "description", "score")
            and isinstance(v, (str, int, float, bool))
        )
        out[index] = LatentLabel(
            str(row["description"]),
            float(score) if score is not None else None,
            extra,
            _reads(row.get("top_labels")),
        )
    return out


def _reads(top_labels: Any) -> tuple[tuple[str, float], ...]:
    """The ``word:`` entries of a ``top_labels`` list as ``(word, auroc)``; anything else in
    it (concepts, malformed entries) names no word."""
    if not isinstance(top_labels, list):
        return ()
    out = []
    for entry in top_labels:
        if not isinstance(entry, dict):
            continue
        label, auroc = entry.get("label"), entry.get("auroc")
        if isinstance(label, str) and label.startswith("word:") and isinstance(auroc, (int, float)):
            out.append((label[len("word:") :], float(auroc)))
    return tuple(out)
