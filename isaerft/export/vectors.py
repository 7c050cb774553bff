"""``SteeringVectors``: per-site residual vectors exported from a trained intervention.

The native file is safetensors, one tensor per site plus JSON metadata::

    vector/<hook_name>                (d_in,)  float32   the vector added at that hook
    latent_coefficients/<hook_name>   (d_sae,) float32   vector = coefficients @ sae.W_dec
    metadata: format, format_version, model_name, d_model, n_layers, source_run,
              approximation (JSON), sites (JSON: hook_name, block, kind, sae_fingerprint, ...)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from isaerft._io import check_format, read_safetensors, write_safetensors
from isaerft.export.layers import block_index

FORMAT = "isaerft.steering_vectors"
FORMAT_VERSION = 1
KINDS = ("exact", "data_mean")
VECTOR_PREFIX = "vector/"
COEFFICIENT_PREFIX = "latent_coefficients/"


@dataclass
class SiteVector:
    """The vector that stands in for one site's edit.

    Attributes:
        hook_name: the TransformerLens hook the vector is added at.
        vector: ``(d_in,)`` float32; the change the site makes to the activation there.
        kind: ``"exact"`` (an input-independent edit: the site adds exactly this vector at
            every position) or ``"data_mean"`` (an input-dependent edit averaged over the
            tokens of a dataset).
        coefficients: ``(d_sae,)`` float32 per-latent coefficients in units of the SAE's
            stored ``W_dec`` rows, so ``vector == coefficients @ sae.W_dec``; ``None`` for
            SAEs that rescale their output per token (no per-latent decomposition exists).
        sae_fingerprint: :func:`isaerft.sae_fingerprint` of the SAE the edit was trained on.
        neuronpedia_id: the SAE's Neuronpedia id (``"gemma-2-2b/12-gemmascope-res-16k"``).
        component: the component kind that produced the edit (``"bias"``, ``"scale"``, ...).
        n_tokens: how many tokens a ``"data_mean"`` vector averages over (0 when exact).
    """

    hook_name: str
    vector: torch.Tensor
    kind: str
    coefficients: torch.Tensor | None = None
    sae_fingerprint: str = ""
    neuronpedia_id: str | None = None
    component: str = ""
    n_tokens: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"SiteVector.kind={self.kind!r} is not allowed; use one of {list(KINDS)}"
            )
        if not isinstance(self.vector, torch.Tensor) or self.vector.dim() != 1:
            raise ValueError(f"SiteVector.vector for {self.hook_name!r} must be a 1-D tensor")
        self.vector = self.vector.detach().to("cpu", torch.float32)
        if not torch.isfinite(self.vector).all():
            raise ValueError(
                f"the vector for {self.hook_name!r} has NaN or infinite entries; the trained "
                "intervention or the data it was averaged over is broken"
            )
        if self.coefficients is not None:
            self.coefficients = self.coefficients.detach().to("cpu", torch.float32)

    @property
    def block(self) -> int | None:
        """The block the hook belongs to, ``None`` outside blocks."""
        return block_index(self.hook_name)

    def top_latents(self, k: int | None = None, min_abs: float = 0.0) -> list[tuple[int, float]]:
        """The sparse coefficient list ``[(latent index, coefficient)]``, largest ``|c|`` first.

        Only non-zero coefficients with ``|c| > min_abs`` are listed, at most ``k`` of them.
        """
        if self.coefficients is None:
            raise ValueError(
                f"the site at {self.hook_name!r} has no per-latent coefficients: its SAE rescales "
                "the decoded edit per token (run-time normalisation)"
            )
        coefficients = self.coefficients
        keep = (coefficients.abs() > min_abs) & (coefficients != 0)
        indices = keep.nonzero().flatten()
        order = coefficients[indices].abs().argsort(descending=True, stable=True)
        indices = indices[order][:k] if k is not None else indices[order]
        return [(int(i), float(coefficients[i])) for i in indices]

    def record(self) -> dict[str, Any]:
        """JSON-ready description of this site (everything except the tensors)."""
        return {
            "hook_name": self.hook_name,
            "block": self.block,
            "kind": self.kind,
            "component": self.component,
            "d_in": int(self.vector.numel()),
            "norm": float(self.vector.norm()),
            "n_tokens": self.n_tokens,
            "sae_fingerprint": self.sae_fingerprint,
            "neuronpedia_id": self.neuronpedia_id,
            "has_coefficients": self.coefficients is not None,
        }


@dataclass
class SteeringVectors:
    """Per-site steering vectors plus what is needed to place them in other tools.

    Attributes:
        sites: one :class:`SiteVector` per spliced hook, in model order.
        model_name: the TransformerLens ``cfg.model_name`` of the base model.
        d_model: the base model's residual width.
        n_layers: the base model's number of blocks.
        source_run: where the intervention came from (run directory or intervention folder).
        approximation: how well the vectors reproduce the intervention on held-out data:
            ``kl_steered`` (mean per-token KL from the ISaeRFT model to the steered base model),
            ``kl_base`` (the same to the unsteered base model, the reference), ``n_tokens``.
    """

    sites: list[SiteVector]
    model_name: str
    d_model: int
    n_layers: int
    source_run: str = ""
    approximation: dict[str, float] | None = field(default=None)

    def __post_init__(self) -> None:
        if not self.sites:
            raise ValueError("SteeringVectors needs at least one site")
        hooks = [site.hook_name for site in self.sites]
        dupes = sorted({h for h in hooks if hooks.count(h) > 1})
        if dupes:
            raise ValueError(f"SteeringVectors lists hooks {dupes} more than once")

    @property
    def hook_names(self) -> list[str]:
        return [site.hook_name for site in self.sites]

    def __getitem__(self, hook_name: str) -> SiteVector:
        for site in self.sites:
            if site.hook_name == hook_name:
                return site
        raise KeyError(f"no vector at {hook_name!r}; hooks: {self.hook_names}")

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{hook_name: vector}``, what :func:`isaerft.export.steer` adds."""
        return {site.hook_name: site.vector for site in self.sites}

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the whole export (no tensors)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "source_run": self.source_run,
            "approximation": self.approximation,
            "sites": [site.record() for site in self.sites],
        }

    def save(self, path: str | Path) -> Path:
        """Write the native safetensors file (see the module docstring), atomically."""
        tensors: dict[str, torch.Tensor] = {}
        for site in self.sites:
            tensors[VECTOR_PREFIX + site.hook_name] = site.vector
            if site.coefficients is not None:
                tensors[COEFFICIENT_PREFIX + site.hook_name] = site.coefficients
        meta = self.metadata()
        header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        return write_safetensors(path, tensors, metadata=header)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVectors:
        """Read a file written by :meth:`save`."""
        meta = read_metadata(path)
        check_format(
            meta,
            path,
            kind=FORMAT,
            version=FORMAT_VERSION,
            what="an isaerft steering-vector file",
            fix="write one with `isaerft export RUN --format safetensors`",
        )
        tensors = read_safetensors(path)
        sites = []
        for record in json.loads(meta["sites"]):
            hook = record["hook_name"]
            sites.append(
                SiteVector(
                    hook_name=hook,
                    vector=tensors[VECTOR_PREFIX + hook],
                    kind=record["kind"],
                    coefficients=tensors.get(COEFFICIENT_PREFIX + hook),
                    sae_fingerprint=record.get("sae_fingerprint", ""),
                    neuronpedia_id=record.get("neuronpedia_id"),
                    component=record.get("component", ""),
                    n_tokens=int(record.get("n_tokens", 0)),
                )
            )
        approximation = json.loads(meta.get("approximation", "null"))
        return cls(
            sites=sites,
            model_name=meta.get("model_name", ""),
            d_model=int(meta["d_model"]),
            n_layers=int(meta["n_layers"]),
            source_run=meta.get("source_run", ""),
            approximation=approximation,
        )

    def summary(self) -> str:
        """A few human-readable lines: one per site, then the approximation gap."""
        lines = []
        for site in self.sites:
            extra = f", mean over {site.n_tokens} tokens" if site.kind == "data_mean" else ""
            norm = float(site.vector.norm())
            lines.append(
                f"{site.hook_name}: {site.kind} ({site.component}{extra}), |v| = {norm:.4g}"
            )
        gap = self.approximation
        if gap:
            ratio = gap["kl_steered"] / gap["kl_base"] if gap["kl_base"] > 0 else math.nan
            lines.append(
                f"held-out KL(ISaeRFT || steered) = {gap['kl_steered']:.4g} nats/token, "
                f"KL(ISaeRFT || base) = {gap['kl_base']:.4g} (ratio {ratio:.3g}, "
                f"{int(gap['n_tokens'])} tokens)"
            )
            averaged = [s.component or "trained" for s in self.sites if s.kind == "data_mean"]
            lines.append(explain_ratio(ratio, sorted(set(averaged))))
        return "\n".join(lines)


def explain_ratio(ratio: float, averaged: list[str]) -> str:
    """One plain sentence on the approximation ratio ``kl_steered / kl_base``.

    Args:
        ratio: ``KL(ISaeRFT || steered) / KL(ISaeRFT || base)``: 0 when the vectors reproduce
            the trained edit, 1 when steering with them comes no closer to it than the base
            model (NaN when the edit did not change the predictions at all).
        averaged: the component kinds whose input-dependent edits were averaged over data.
    """
    scale = "(0 = reproduces it, 1 = no better than the base model)"
    if math.isnan(ratio):
        return (
            "ratio n/a: the trained edit did not change the next-token predictions on these "
            "texts (KL to the base model is 0), so there was nothing to reproduce"
        )
    if ratio < 0.05:
        sentence = (
            f"ratio {ratio:.2g} = the constant vector reproduces {1 - ratio:.0%} of what the "
            f"trained edit does {scale}"
        )
    elif ratio <= 1:
        sentence = (
            f"ratio {ratio:.2g} = the constant vector misses {ratio:.0%} of what the trained "
            f"edit does {scale}"
        )
    else:
        sentence = (
            f"ratio {ratio:.2g} = steering with the constant vector lands further from the "
            f"trained model than the base model is {scale}"
        )
    if averaged and ratio >= 0.05:
        kinds = "/".join(averaged)
        sentence += (
            f": {kinds} edits depend on the input, which one constant vector cannot; train "
            "intervention.component=bias for an exact vector"
        )
    return sentence


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if it has none)."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found")
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
