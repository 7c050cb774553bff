"""Neuronpedia payloads: a custom-vector upload and a feature-steering list.

* ``vectors``: bodies for ``POST /api/vector/new`` (``modelId``, ``layerNumber``,
  ``hookType``, ``vector``, ``vectorLabel``, ``vectorDefaultSteerStrength``). Neuronpedia
  only accepts ``hookType = "hook_resid_pre"``, so a ``blocks.N.hook_resid_post`` vector is
  uploaded at layer ``N + 1`` (the same tensor).
* ``features``: ``[{modelId, layer, index, strength}]`` for Neuronpedia's steering, with
  ``layer`` the SAE's source id (``"12-gemmascope-res-16k"``). Its ``SIMPLE_ADDITIVE``
  method with ``normalize_steering = false`` and ``strength_multiplier = 1`` adds
  ``strength * W_dec[index]``, so each strength is the latent's coefficient in units of the
  SAE's stored decoder rows and the list sums to the exported vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from isaerft.export.layers import neuronpedia_layer
from isaerft.export.vectors import SiteVector, SteeringVectors

HOOK_TYPE = "hook_resid_pre"
STRENGTH_RANGE = (-100.0, 100.0)
MAX_VECTOR_LENGTH = 24576


def split_neuronpedia_id(neuronpedia_id: str) -> tuple[str, str]:
    """``"gemma-2-2b/12-gemmascope-res-16k"`` -> ``("gemma-2-2b", "12-gemmascope-res-16k")``."""
    model_id, sep, source = str(neuronpedia_id).partition("/")
    if not sep or not model_id or not source or "/" in source:
        raise ValueError(
            f"neuronpedia id {neuronpedia_id!r} must look like 'MODEL_ID/SOURCE', e.g. "
            "'gemma-2-2b/12-gemmascope-res-16k'"
        )
    return model_id, source


def neuronpedia_payload(
    vectors: SteeringVectors,
    *,
    neuronpedia_id: str | Mapping[str, str] | None = None,
    label: str | None = None,
    default_strength: float = 1.0,
    max_features: int | None = None,
) -> dict[str, Any]:
    """Build the Neuronpedia vector-upload bodies and feature-steering list for ``vectors``.

    Args:
        vectors: the export.
        neuronpedia_id: the SAE's Neuronpedia id when ``sae.cfg.metadata.neuronpedia_id`` is
            missing or wrong: one string for a single-site export, else ``{hook_name: id}``.
        label: ``vectorLabel``; defaults to ``"isaerft <source run>"``.
        default_strength: ``vectorDefaultSteerStrength`` (``1`` reproduces the export);
            Neuronpedia accepts -100 to 100.
        max_features: keep at most this many features per site, largest ``|strength|`` first
            (``None`` keeps every latent with a non-zero coefficient).

    Raises:
        ValueError: when a site's SAE has no Neuronpedia id and none is passed, when a site
            cannot be uploaded (see :func:`isaerft.export.layers.neuronpedia_layer`), or when
            ``default_strength`` is out of range.
    """
    low, high = STRENGTH_RANGE
    if not low <= default_strength <= high:
        raise ValueError(
            f"default_strength={default_strength} must be in [{low}, {high}] for Neuronpedia"
        )
    ids = {
        site.hook_name: _site_id(site, neuronpedia_id, len(vectors.sites)) for site in vectors.sites
    }
    model_ids = {split_neuronpedia_id(i)[0] for i in ids.values()}
    if len(model_ids) != 1:
        raise ValueError(f"the sites' Neuronpedia ids name different models {sorted(model_ids)}")
    model_id = model_ids.pop()
    if vectors.d_model > MAX_VECTOR_LENGTH:
        raise ValueError(f"Neuronpedia accepts vectors of at most {MAX_VECTOR_LENGTH} entries")
    layers: dict[int, torch.Tensor] = {}
    for site in vectors.sites:
        layer = neuronpedia_layer(site.hook_name, vectors.n_layers)
        layers[layer] = site.vector if layer not in layers else layers[layer] + site.vector
    name = (
        label
        if label is not None
        else f"isaerft {vectors.source_run or vectors.model_name}".strip()
    )
    uploads = [
        {
            "modelId": model_id,
            "layerNumber": layer,
            "hookType": HOOK_TYPE,
            "vector": [float(x) for x in vector],
            "vectorLabel": name,
            "vectorDefaultSteerStrength": float(default_strength),
        }
        for layer, vector in sorted(layers.items())
    ]
    features: list[dict[str, Any]] = []
    notes = []
    for site in vectors.sites:
        if site.coefficients is None:
            notes.append(f"{site.hook_name}: no per-latent coefficients (run-time normalised SAE)")
            continue
        site_model, source = split_neuronpedia_id(ids[site.hook_name])
        for index, strength in site.top_latents(k=max_features):
            features.append(
                {"modelId": site_model, "layer": source, "index": index, "strength": strength}
            )
    return {
        "format": "isaerft.neuronpedia",
        "model_name": vectors.model_name,
        "source_run": vectors.source_run,
        "vectors": uploads,
        "features": features,
        "steer": {
            "steer_method": "SIMPLE_ADDITIVE",
            "normalize_steering": False,
            "strength_multiplier": 1.0,
        },
        "notes": notes,
    }


def _site_id(site: SiteVector, given: str | Mapping[str, str] | None, n_sites: int) -> str:
    if isinstance(given, Mapping):
        if site.hook_name in given:
            return str(given[site.hook_name])
    elif given is not None:
        if n_sites > 1:
            raise ValueError(
                "one neuronpedia_id was given for an export with several sites; pass "
                "{hook_name: id} (CLI: --neuronpedia-id HOOK=ID, repeated)"
            )
        return str(given)
    if site.neuronpedia_id:
        return site.neuronpedia_id
    raise ValueError(
        f"the SAE at {site.hook_name!r} has no cfg.metadata.neuronpedia_id, so its latents cannot "
        "be named on Neuronpedia; pass neuronpedia_id='MODEL_ID/SOURCE' (CLI: --neuronpedia-id), "
        "e.g. 'gemma-2-2b/12-gemmascope-res-16k'"
    )
