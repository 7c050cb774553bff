"""One splice point: an SAE at a hook, a component between its encode and (linear) decode.

The site maps an activation ``x`` to ``x + D(component(f)) - D(f)`` with ``f = encode(x)``,
computed as ``x + D_lin(component(f) - f)`` where ``D_lin`` is the linear part of the SAE's
decode. The SAE's reconstruction error never enters, and a zero delta leaves ``x`` unchanged
bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from sae_lens import SAE
from sae_lens.saes.topk_sae import TopK, TopKSAE
from torch import nn

from isaerft._fingerprint import weights_digest
from isaerft.components import LatentComponent

# Inference or training classes whose decode is ``out_norm(acts @ W_dec + b_dec)``.
SUPPORTED_ARCHITECTURES = (
    "standard",
    "topk",
    "batchtopk",
    "jumprelu",
    "gated",
    "matryoshka_batchtopk",
)
_LINEAR_OUT_NORMS = ("none", "expected_average_only_in", "layer_norm", "constant_norm_rescale")


def sae_architecture(sae: SAE[Any]) -> str:
    return str(sae.cfg.architecture())


def check_sae_supported(sae: SAE[Any]) -> None:
    """Raise ``TypeError`` for SAEs whose decode is not affine in the latents."""
    if not isinstance(sae, SAE):
        raise TypeError(f"expected a sae_lens.SAE, got {type(sae).__name__}")
    arch = sae_architecture(sae)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise TypeError(
            f"SAE architecture {arch!r} is not supported (its decode is not a linear map of the "
            f"latents onto the hook it reads); supported: {list(SUPPORTED_ARCHITECTURES)}"
        )
    norm = sae.cfg.normalize_activations
    if norm not in _LINEAR_OUT_NORMS:
        raise TypeError(
            f"SAE normalize_activations={norm!r} is not supported; fold it into the weights first "
            "(e.g. sae.fold_activation_whitening(...)) or use one of "
            f"{list(_LINEAR_OUT_NORMS)}"
        )


def sae_fingerprint(sae: SAE[Any]) -> str:
    """A sha256 over the SAE's weights (as float32) and architecture; changes if any weight does.
    Kept per live SAE while its weights stay the same
    (:func:`~isaerft._fingerprint.weights_digest`)."""
    names = sorted(sae.state_dict())
    return "sha256:" + weights_digest(sae, sae_architecture(sae), names, shapes=True)


class LinearDecoder:
    """The linear part of an SAE's decode, evaluated right after that SAE's ``encode``.

    Run-time normalisation (``layer_norm``, ``constant_norm_rescale``) stores per-token
    statistics on the SAE during ``encode``; :meth:`finish` applies their linear part and
    releases them, as the SAE's own decode would.
    """

    def __init__(self, sae: SAE[Any]) -> None:
        self.sae = sae

    @property
    def weight(self) -> torch.Tensor:
        w = self.sae.W_dec
        if getattr(self.sae.cfg, "rescale_acts_by_decoder_norm", False):
            w = w / w.norm(dim=-1, keepdim=True)
        return w

    def dense(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta @ W_dec`` for a dense latent delta of shape ``(..., d_sae)``."""
        w = self.weight
        return delta.to(w.dtype) @ w

    def gather(self, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_j weights[n, j] * W_dec[idx[n, j]]`` per row ``n``: the sparse decode."""
        w = self.weight
        return F.embedding_bag(idx, w, per_sample_weights=weights.to(w.dtype), mode="sum")

    def finish(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        norm = sae.cfg.normalize_activations
        if norm == "layer_norm":
            out = out * sae.ln_std
            del sae.ln_mu, sae.ln_std
        elif norm == "constant_norm_rescale":
            out = out / sae.x_norm_coeff
            del sae.x_norm_coeff
        out = sae.reshape_fn_out(out, sae.d_head)
        return out.to(like.dtype).expand_as(like)


class SaeSite(nn.Module):
    """An SAE and its trainable component at one hook point."""

    sae: SAE[Any]
    component: LatentComponent

    def __init__(self, hook_name: str, sae: SAE[Any], component: LatentComponent) -> None:
        super().__init__()
        self.hook_name = hook_name
        self.sae = sae
        self.component = component
        self.decoder = LinearDecoder(sae)
        self.last_l1: torch.Tensor | None = None
        self.last_latents: torch.Tensor | None = None
        self.keep_latents = False
        # The edit is applied ``factor`` times: ``x + factor * (x' - x)`` (-1 subtracts it);
        # see ISaeRFTModel.edit_factor.
        self.factor = 1.0

    def forward(self, x: torch.Tensor, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Return the edited activation. ``latents`` may pass precomputed ``encode(x)``."""
        k = int(getattr(self.sae.cfg, "k", 0) or 0)
        if latents is None and not self.keep_latents and self.component.takes_active_codes(k):
            active = topk_active_codes(self.sae, x)
            if active is not None:
                values, indices = active
                k = values.shape[-1]
                out, self.last_l1 = self.component.active_decoded_delta(
                    values.reshape(-1, k), indices.reshape(-1, k), self.decoder
                )
                return self._add_edit(x, out.reshape(*values.shape[:-1], -1))
        if latents is None:
            f = self.sae.encode(x)
        else:
            f = latents
            _prime_out_norm(self.sae, x)
        if self.keep_latents:
            self.last_latents = f.detach()
        out, self.last_l1 = self.component.decoded_delta(f, self.decoder)
        return self._add_edit(x, out)

    def _add_edit(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        delta = self.decoder.finish(out, x)
        return x + delta if self.factor == 1.0 else x + self.factor * delta


def topk_active_codes(sae: SAE[Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(values, indices)``, each ``(..., k)``, of an inference TopK SAE's active latents.

    The same computation as ``TopKSAE.encode`` in SAELens (input processing, ``W_enc``,
    ``hook_sae_acts_pre``, the decoder-norm rescale, top-k, ReLU) without scattering the codes
    into a dense ``(..., d_sae)`` tensor: filling that tensor cost more than the top-k itself
    on CPU. ``None`` (use ``sae.encode``) for other SAEs, for sparse-activation TopK, and when
    something is hooked on ``hook_sae_acts_post``, which this path does not run.
    """
    if not (isinstance(sae, TopKSAE) and type(sae).encode is TopKSAE.encode):
        return None
    act = sae.activation_fn
    if (
        not isinstance(act, TopK)
        or act.use_sparse_activations
        or sae.hook_sae_acts_post._forward_hooks
    ):
        return None
    hidden_pre = sae.hook_sae_acts_pre(sae.process_sae_in(x) @ sae.W_enc + sae.b_enc)
    if sae.cfg.rescale_acts_by_decoder_norm:
        hidden_pre = hidden_pre * sae.W_dec.norm(dim=-1)
    values, indices = torch.topk(hidden_pre, k=act.k, dim=-1, sorted=False)
    return values.relu(), indices


def _prime_out_norm(sae: SAE[Any], x: torch.Tensor) -> None:
    """Recreate the per-token statistics ``encode`` would have stored, without encoding."""
    if sae.cfg.normalize_activations in ("layer_norm", "constant_norm_rescale"):
        sae.run_time_activation_norm_fn_in(sae.reshape_fn_in(x.to(sae.dtype)))


class SiteList(nn.ModuleList):
    """``nn.ModuleList`` of :class:`SaeSite`, typed as such."""

    def __iter__(self) -> Iterator[SaeSite]:
        return super().__iter__()  # type: ignore[return-value]

    def __getitem__(self, index: int) -> SaeSite:  # type: ignore[override]
        return super().__getitem__(index)  # type: ignore[return-value]
