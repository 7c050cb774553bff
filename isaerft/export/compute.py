"""From trained per-latent edits to residual vectors: exact where the edit is constant,
data-averaged where it depends on the input.

At a site the model adds ``delta(x) = D_lin(component(f) - f)`` with ``f = sae.encode(x)``
and ``D_lin`` the linear part of the SAE decode (:class:`isaerft.site.LinearDecoder`).

* A bias edit adds ``sum_i b_i W_dec[i]`` at every position: one exact vector. Any kind
  whose :meth:`~isaerft.components.LatentComponent.constant_shift` is not ``None`` is
  exported the same way.
* A scale edit adds ``sum_i (s_i - 1) f_i(x) W_dec[i]``, which depends on ``x``; the exported
  vector is its mean over the tokens of a dataset, ``(s - 1) * E_x[f(x)] @ W_dec``. Any other
  component is averaged the same way: ``E_x[component(f) - f] @ W_dec``.
* SAEs that normalise activations at run time (``layer_norm``, ``constant_norm_rescale``)
  rescale the decoded edit per token, so even a bias has no exact constant vector; only the
  data mean of the actual change ``x' - x`` is exported for them, without per-latent
  coefficients.

The expectation is over the activations the ISaeRFT model itself produces (upstream sites
applied), token-weighted over every real (non-padding) position.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from sae_lens import SAE

from isaerft.export.data import TokenData, token_batches
from isaerft.export.layers import block_index
from isaerft.export.vectors import SiteVector, SteeringVectors
from isaerft.model import ISaeRFTModel
from isaerft.site import SaeSite, sae_fingerprint

RUN_TIME_NORMS = ("layer_norm", "constant_norm_rescale")


def has_run_time_norm(sae: SAE[Any]) -> bool:
    """Whether the SAE rescales its decode per token (so no edit is a constant vector)."""
    return sae.cfg.normalize_activations in RUN_TIME_NORMS


def is_exact(site: SaeSite) -> bool:
    """Whether the site's edit is the same vector at every position (its component is a
    constant shift, and its SAE has no run-time norm)."""
    return site.component.constant_shift() is not None and not has_run_time_norm(site.sae)


def why_not_exact(site: SaeSite) -> str:
    """A sentence explaining why a site's edit has no exact constant vector."""
    if has_run_time_norm(site.sae):
        return (
            f"site {site.hook_name!r}: its SAE normalises activations at run time "
            f"(normalize_activations={site.sae.cfg.normalize_activations!r}), so the decoded "
            "edit is rescaled per token and has no exact constant vector"
        )
    kind = type(site.component).__name__
    return (
        f"site {site.hook_name!r}: its {kind} edits are input-dependent (a scaled latent moves "
        "the activation in proportion to how strongly it fires), so there is no exact constant "
        "vector"
    )


def vectors_from_model(
    model: ISaeRFTModel,
    data: TokenData | None = None,
    *,
    eval_data: TokenData | None = None,
    batch_size: int = 8,
    source_run: str = "",
) -> SteeringVectors:
    """Export one residual vector per site of a trained ISaeRFT model.

    Args:
        model: the trained model.
        data: texts or tokens to average input-dependent edits over (see
            :data:`isaerft.export.data.TokenData`). Not needed when every site is exact
            (bias components on SAEs without run-time normalisation).
        eval_data: held-out texts or tokens; when given, the approximation gap (mean KL
            from the ISaeRFT model to the steered and to the base model) is measured and
            stored in ``approximation``.
        batch_size: sequences per forward pass.
        source_run: recorded in the metadata (the run directory, usually).

    Raises:
        ValueError: when a site needs data and none is given; the message names each
            such site and why.
    """
    if not isinstance(model, ISaeRFTModel):
        raise TypeError(f"model must be an ISaeRFTModel, got {type(model).__name__}")
    all_sites = list(model.sites)
    averaged = [site for site in all_sites if not is_exact(site)]
    if averaged and data is None:
        reasons = "; ".join(why_not_exact(site) for site in averaged)
        raise ValueError(
            f"{reasons}. Pass data= (CLI: --data FILE) to export the data-averaged vector "
            "E_x[sum_i (s_i - 1) f_i(x) W_dec[i]] instead"
        )
    means = _data_means(model, data, averaged, batch_size) if averaged and data is not None else {}
    sites = []
    for site in all_sites:
        coefficients: torch.Tensor | None
        shift = site.component.constant_shift()
        if shift is not None and not has_run_time_norm(site.sae):
            coefficients = shift.detach().float()
            vector, n_tokens, kind = _decode(site, coefficients), 0, "exact"
        else:
            vector, coefficients, n_tokens = means[site.hook_name]
            kind = "data_mean"
        meta = site.sae.cfg.metadata
        sites.append(
            SiteVector(
                hook_name=site.hook_name,
                vector=vector,
                kind=kind,
                coefficients=_stored_row_units(site.sae, coefficients),
                sae_fingerprint=sae_fingerprint(site.sae),
                neuronpedia_id=meta.get("neuronpedia_id"),
                component=model.config.component,
                n_tokens=n_tokens,
            )
        )
    cfg = model.model.cfg
    vectors = SteeringVectors(
        sites=sites,
        model_name=str(cfg.model_name),
        d_model=int(cfg.d_model),
        n_layers=int(cfg.n_layers),
        source_run=source_run,
    )
    if eval_data is not None:
        from isaerft.export.gap import approximation_gap

        vectors.approximation = approximation_gap(model, vectors, eval_data, batch_size=batch_size)
    return vectors


def _decode(site: SaeSite, coefficients: torch.Tensor) -> torch.Tensor:
    """``coefficients @ W`` with ``W`` the decoder rows the site itself uses, in float32."""
    weight = site.decoder.weight.detach().float()
    return (coefficients.to(weight.device) @ weight).cpu()


def _stored_row_units(sae: SAE[Any], coefficients: torch.Tensor | None) -> torch.Tensor | None:
    """Coefficients on the site's effective rows -> on the SAE's stored ``W_dec`` rows.

    With ``rescale_acts_by_decoder_norm`` the site decodes with unit-norm rows, so the same
    vector is ``sum_i (c_i / |W_dec[i]|) W_dec[i]`` in stored units, which is what tools that
    steer with ``W_dec[i]`` (Neuronpedia, SAELens) expect.
    """
    if coefficients is None:
        return None
    coefficients = coefficients.detach().float().cpu()
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        coefficients = coefficients / sae.W_dec.detach().float().norm(dim=-1).cpu()
    return coefficients


def _last_block_needed(model: ISaeRFTModel) -> int | None:
    """``stop_at_layer`` that still runs every site (no block after the last site matters)."""
    blocks = [block_index(site.hook_name) for site in model.sites]
    if any(b is None for b in blocks):
        return None
    last = max(b for b in blocks if b is not None) + 1
    return last if last < model.model.cfg.n_layers else None


def _data_means(
    model: ISaeRFTModel, data: TokenData, sites: list[SaeSite], batch_size: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None, int]]:
    """Per site: (mean vector, mean latent delta or None, number of tokens averaged)."""
    by_hook = {site.hook_name: site for site in sites}
    device = next(model.model.parameters()).device
    latent_sums = {
        h: torch.zeros(s.sae.cfg.d_sae, dtype=torch.float64, device=device)
        for h, s in by_hook.items()
    }
    change_sums = {
        h: torch.zeros(s.sae.cfg.d_in, dtype=torch.float64, device=device)
        for h, s in by_hook.items()
    }
    inputs: dict[str, torch.Tensor] = {}
    state: dict[str, Any] = {"mask": None, "tokens": 0}

    # Keyed by the site's hook name, not ``hook.name``: a TransformerBridge calls its hook
    # points by their canonical names (blocks.L.hook_out for blocks.L.hook_resid_post).
    def record_input(name: str, activation: torch.Tensor, hook: Any) -> None:
        inputs[name] = activation

    def record_change(name: str, activation: torch.Tensor, hook: Any) -> None:
        site, mask = by_hook[name], state["mask"]
        if has_run_time_norm(site.sae):
            change = activation.float() - inputs.pop(name).float()
            change_sums[name] += change.reshape(*mask.shape, -1)[mask].sum(0, dtype=torch.float64)
        else:
            assert site.last_latents is not None
            delta = site.component.latent_delta(site.last_latents)
            latent_sums[name] += delta[mask].sum(0, dtype=torch.float64)

    before: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (h, partial(record_input, h)) for h, s in by_hook.items() if has_run_time_norm(s.sae)
    ]
    after: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
        (h, partial(record_change, h)) for h in by_hook
    ]
    kept = {h: s.keep_latents for h, s in by_hook.items()}
    hooked = model.model
    stop_at_layer = _last_block_needed(model)
    try:
        for site in sites:
            site.keep_latents = True
        with torch.no_grad():
            for tokens, mask in token_batches(hooked, data, batch_size):
                state["mask"], state["tokens"] = mask, state["tokens"] + int(mask.sum())
                with hooked.hooks(fwd_hooks=before), model.spliced(), hooked.hooks(fwd_hooks=after):
                    hooked(tokens, return_type=None, stop_at_layer=stop_at_layer)
    finally:
        for hook, site in by_hook.items():
            site.keep_latents, site.last_latents = kept[hook], None
    n = state["tokens"]
    out: dict[str, tuple[torch.Tensor, torch.Tensor | None, int]] = {}
    for hook, site in by_hook.items():
        if has_run_time_norm(site.sae):
            out[hook] = ((change_sums[hook] / n).float().cpu(), None, n)
        else:
            mean_delta = (latent_sums[hook] / n).float()
            out[hook] = (_decode(site, mean_delta), mean_delta.cpu(), n)
    return out
