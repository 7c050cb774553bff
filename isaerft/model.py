"""``ISaeRFTModel``: a frozen TransformerLens model with trainable components spliced at SAE sites.

The model is a ``HookedTransformer`` or a ``TransformerBridge``; see :mod:`isaerft.backends`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from torch import nn

from isaerft.backends import (
    LanguageModel,
    canonical_hook_name,
    check_language_model,
    generation_kwargs,
)
from isaerft.components import build_component
from isaerft.config import ISaeRFTConfig
from isaerft.site import SaeSite, SiteList, check_sae_supported


class ISaeRFTModel(nn.Module):
    """A language model whose SAE latents are edited by small trainable components.

    At each spliced hook the activation ``x`` becomes ``x + D(component(f)) - D(f)`` with
    ``f = sae.encode(x)`` and ``D`` the linear part of the SAE decode. The model and SAEs are
    frozen; only the components train. With identity initialisation the outputs equal the
    base model's bit for bit.

    Args:
        model: a ``transformer_lens.HookedTransformer`` (``HookedSAETransformer`` works too)
            or a ``transformer_lens.model_bridge.TransformerBridge``.
        saes: one ``sae_lens.SAE`` or several, each spliced at ``sae.cfg.metadata.hook_name``.
        config: which component to train and how; defaults to ``ISaeRFTConfig()`` (scales).

    Raises:
        TypeError, ValueError: on a bad model, SAE or config; the model is left untouched.
    """

    model: LanguageModel
    sites: SiteList

    def __init__(
        self,
        model: LanguageModel,
        saes: SAE[Any] | Sequence[SAE[Any]],
        config: ISaeRFTConfig | None = None,
    ) -> None:
        super().__init__()
        config = config if config is not None else ISaeRFTConfig()
        plan = plan_sites(model, saes, config)
        self.model = model
        self.config = config
        self.sites = SiteList(
            SaeSite(hook, sae, build_component(config.component, sae.cfg.d_sae, config))
            for hook, sae in plan
        )
        device = next(model.parameters()).device
        self.sites.to(device)
        for module in (model, *(site.sae for site in self.sites)):
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)
        self._enabled = True
        self._anchor: dict[str, torch.Tensor] | None = None

    # --- splicing -------------------------------------------------------------------------

    @property
    def hook_names(self) -> list[str]:
        return [site.hook_name for site in self.sites]

    def site(self, hook_name: str) -> SaeSite:
        """The :class:`~isaerft.site.SaeSite` spliced at ``hook_name``."""
        for site in self.sites:
            if site.hook_name == hook_name:
                return site
        raise KeyError(f"no site at {hook_name!r}; spliced hooks: {self.hook_names}")

    @contextmanager
    def spliced(self, latents: dict[str, torch.Tensor] | None = None) -> Iterator[LanguageModel]:
        """Within this context the wrapped model runs with the components spliced in.

        ``latents`` maps hook names to precomputed ``sae.encode`` outputs for the inputs
        about to run (prefix caching), so those sites skip their encode.
        """
        if not self._enabled:
            yield self.model
            return
        latents = latents or {}
        hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
            (site.hook_name, _hook_fn(site, latents.get(site.hook_name))) for site in self.sites
        ]
        with self.model.hooks(fwd_hooks=hooks):
            yield self.model

    @contextmanager
    def disabled(self) -> Iterator[ISaeRFTModel]:
        """Within this context the model behaves as the base model (components bypassed)."""
        previous, self._enabled = self._enabled, False
        try:
            yield self
        finally:
            self._enabled = previous

    @contextmanager
    def edit_factor(self, factor: float) -> Iterator[ISaeRFTModel]:
        """Within this context every site applies its edit ``factor`` times:
        ``x + factor * (x' - x)``. ``1`` is the trained edit, ``0`` the base model, ``-1``
        subtracts the edit (what the ``reps`` objective trains to suppress the behaviour)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"edit_factor(factor={factor!r}) needs a number")
        if not math.isfinite(factor):
            raise ValueError(f"edit_factor(factor={factor!r}) needs a finite number")
        previous = [site.factor for site in self.sites]
        for site in self.sites:
            site.factor = float(factor)
        try:
            yield self
        finally:
            for site, value in zip(self.sites, previous):
                site.factor = value

    def forward(
        self, *args: Any, latents: dict[str, torch.Tensor] | None = None, **kwargs: Any
    ) -> Any:
        """The wrapped model's ``forward`` with the components spliced in (same signature)."""
        with self.spliced(latents):
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``HookedTransformer.generate`` (KV cache and all) with the components spliced in.

        A component whose edit reads earlier positions (``needs_full_context``) generates
        without the KV cache, since a cached step would show it only the new token."""
        if any(site.component.needs_full_context() for site in self.sites):
            if kwargs.get("use_past_kv_cache"):
                raise ValueError(
                    "use_past_kv_cache=True cannot be used with a component that reads earlier "
                    "positions (e.g. 'conditional'); leave use_past_kv_cache unset"
                )
            kwargs["use_past_kv_cache"] = False
        kwargs = generation_kwargs(self.model, kwargs)  # before the splice: it may probe
        with self.spliced():
            return self.model.generate(*args, **kwargs)

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``run_with_cache`` with the components spliced in."""
        with self.spliced():
            return self.model.run_with_cache(*args, **kwargs)

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``run_with_hooks`` with the components spliced in."""
        with self.spliced():
            return self.model.run_with_hooks(*args, **{**kwargs, "reset_hooks_end": True})

    def __getattr__(self, name: str) -> Any:
        # Tokenizer helpers, cfg, to_tokens, ... come from the wrapped model, as in PEFT.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)

    def to(self, *args: Any, **kwargs: Any) -> ISaeRFTModel:  # type: ignore[override]
        """Move model, SAEs and components together, keeping their configs in sync."""
        self.model.to(*args, **kwargs)
        for site in self.sites:
            site.sae.to(*args, **kwargs)
            site.component.to(*args, **{k: v for k, v in kwargs.items() if k != "dtype"})
        return self

    def train(self, mode: bool = True) -> ISaeRFTModel:
        """Only the components change mode; the frozen model and SAEs stay in eval mode."""
        for site in self.sites:
            site.component.train(mode)
        self.training = mode
        return self

    # --- parameters and edits -------------------------------------------------------------

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for site in self.sites:
            for name, param in site.component.named_parameters():
                yield f"{site.hook_name}/{name}", param

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The component parameters: the only ones that require grad."""
        return [param for _, param in self.named_trainable_parameters()]

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def num_total_parameters(self) -> int:
        frozen = sum(p.numel() for p in self.model.parameters())
        frozen += sum(p.numel() for site in self.sites for p in site.sae.parameters())
        return frozen + self.num_trainable_parameters()

    def print_trainable_parameters(self) -> None:
        trainable, total = self.num_trainable_parameters(), self.num_total_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} "
            f"|| trainable%: {100 * trainable / total:.4f}"
        )

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Component tensors keyed ``"<hook_name>/<param>"`` (what ``save_pretrained`` writes)."""
        return {name: param.detach() for name, param in self.named_trainable_parameters()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load component tensors; keys and shapes must match exactly."""
        params = dict(self.named_trainable_parameters())
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"component weights do not match this model: missing {missing}, unexpected {unexpected}"
            )
        for name, param in params.items():
            if state[name].shape != param.shape:
                raise ValueError(
                    f"component weight {name} has shape {tuple(state[name].shape)}, "
                    f"expected {tuple(param.shape)}"
                )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(state[name].to(param.dtype))

    def latent_edits(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per site, the per-latent deviations from identity, e.g. ``{"scale": s - 1, "bias": b}``."""
        return {
            site.hook_name: {k: v.detach().clone() for k, v in site.component.edits().items()}
            for site in self.sites
        }

    def latent_magnitudes(self) -> dict[str, torch.Tensor]:
        """Per site, how far each latent moved: the sum of ``|edit|`` over its edits."""
        return {site.hook_name: site.component.magnitude() for site in self.sites}

    def num_moved_latents(self, tolerance: float = 1e-3) -> int:
        """How many latents (over all sites) moved by more than ``tolerance``."""
        return sum(int((m > tolerance).sum().item()) for m in self.latent_magnitudes().values())

    def set_anchor(self) -> None:
        """Measure the sparsity penalty from the current component parameters from now on.

        Differential training: load a run trained on trusted data, anchor here, train on the
        suspect data; :meth:`deviation_l1` is then ``sum |theta - theta_anchor|`` over every
        component parameter, so what the new data teaches beyond the trusted fit is the sparse
        part. For ``scale``, ``bias`` and ``scale_bias`` this is the usual L1 moved to the anchor.
        """
        self._anchor = {n: p.detach().clone() for n, p in self.named_trainable_parameters()}

    @property
    def anchored(self) -> bool:
        """Whether :meth:`set_anchor` was called (the L1 measures from the anchor)."""
        return self._anchor is not None

    def l1_targets(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """Each penalised parameter with the value its L1 penalty measures from (zero, or its
        anchor, see :meth:`set_anchor`): what a proximal L1 update shrinks towards.

        Refused with one line for a kind whose penalty depends on the input
        (:attr:`~isaerft.components.LatentComponent.parameter_l1` is ``False``).
        """
        if not all(site.component.parameter_l1 for site in self.sites):
            raise ValueError(
                f"component {self.config.component!r} has an input-dependent L1 penalty, so "
                "it cannot be shrunk by a proximal update; use optim.l1_update=gradient or "
                "a scale, bias or scale_bias component"
            )
        anchor = self._anchor
        return [
            (
                param,
                (anchor[key] if anchor is not None else torch.zeros_like(param)).to(param.device),
            )
            for key, param in self.named_trainable_parameters()
        ]

    def deviation_l1(self) -> torch.Tensor:
        """The sparsity penalty: the L1 norm of the deviation from identity, summed over sites,
        from the last forward (or the parameters' L1 distance from the anchor, see
        :meth:`set_anchor`)."""
        if self._anchor is not None:
            anchor = self._anchor
            return torch.stack(
                [
                    (p - anchor[n].to(p.device)).abs().sum()
                    for n, p in self.named_trainable_parameters()
                ]
            ).sum()
        terms = [site.last_l1 for site in self.sites if site.last_l1 is not None]
        if not terms:
            raise RuntimeError("deviation_l1() needs a forward pass first")
        return torch.stack([t.float() for t in terms]).sum()

    # --- persistence ----------------------------------------------------------------------

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``isaerft_config.json`` and ``isaerft_weights.safetensors`` to ``path``.

        The folder is replaced as a whole (a killed save leaves the old artifact or the new
        one, never a mix); a non-empty folder that is not an isaerft artifact is refused.
        """
        from isaerft.artifact import save_intervention

        return save_intervention(self, path)

    @classmethod
    def from_pretrained(
        cls,
        model: LanguageModel,
        saes: SAE[Any] | Sequence[SAE[Any]],
        path: str | Path,
    ) -> ISaeRFTModel:
        """Rebuild a saved intervention on ``model`` and the same ``saes`` (checked by fingerprint).

        Refuses (``ValueError``) weights that are not the ones the config was saved with, or
        that hold NaN/inf.
        """
        from isaerft.artifact import load_intervention

        return load_intervention(cls, model, saes, path)


def _hook_fn(site: SaeSite, latents: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        return site(activation, latents)

    return hook


def plan_sites(
    model: LanguageModel,
    saes: SAE[Any] | Sequence[SAE[Any]],
    config: ISaeRFTConfig,
) -> list[tuple[str, SAE[Any]]]:
    """Validate model, SAEs and config together and return ``[(hook_name, sae)]`` to splice.

    Nothing is modified, so a failure leaves model and SAEs as they were.
    """
    check_language_model(model)
    if not isinstance(config, ISaeRFTConfig):
        raise TypeError(f"config must be an ISaeRFTConfig, got {type(config).__name__}")
    sae_list = [saes] if isinstance(saes, SAE) else list(saes)
    if not sae_list:
        raise ValueError("ISaeRFTModel needs at least one SAE")
    by_hook: dict[str, SAE[Any]] = {}
    for sae in sae_list:
        check_sae_supported(sae)
        hook = sae.cfg.metadata.hook_name
        if not hook:
            raise ValueError(
                "an SAE has no cfg.metadata.hook_name; set it to the hook it was trained on, "
                "e.g. sae.cfg.metadata.hook_name = 'blocks.6.hook_resid_post'"
            )
        if hook in by_hook:
            raise ValueError(f"two SAEs are given for hook {hook!r}; pass one SAE per hook point")
        by_hook[hook] = sae
    wanted = config.hook_names if config.hook_names is not None else list(by_hook)
    missing = [h for h in wanted if h not in by_hook]
    if missing:
        raise ValueError(
            f"ISaeRFTConfig.hook_names lists {missing} but no SAE given reads those hooks; "
            f"SAE hooks: {sorted(by_hook)}"
        )
    for hook in wanted:
        if hook not in model.hook_dict:
            close = difflib.get_close_matches(hook, list(model.hook_dict), n=3)
            raise ValueError(f"hook {hook!r} is not in the model; did you mean one of {close}?")
    points: dict[str, str] = {}
    for hook in wanted:  # a bridge answers to two names for one hook point
        point = canonical_hook_name(model, hook)
        if point in points:
            raise ValueError(
                f"the SAEs for {points[point]!r} and {hook!r} read the same hook point "
                f"{point!r}; pass one SAE per hook point"
            )
        points[point] = hook
    flat = {h for h in wanted if h.endswith("hook_z") or _reshapes_heads(by_hook[h])}
    widths, param = _activation_widths(model, wanted, flat), next(model.parameters())
    for hook in wanted:
        sae = by_hook[hook]
        if sae.cfg.d_in != widths[hook]:
            raise ValueError(
                f"SAE for {hook!r} has d_in={sae.cfg.d_in} but the activation there has width "
                f"{widths[hook]}; this SAE was trained for a different model or hook"
            )
        if sae.W_dec.device != param.device or sae.W_dec.dtype != param.dtype:
            raise ValueError(
                f"SAE for {hook!r} is on {sae.W_dec.device}/{sae.W_dec.dtype} but the model is on "
                f"{param.device}/{param.dtype}; call sae.to(device={str(param.device)!r}, "
                f"dtype={param.dtype}) first"
            )
    return [(hook, by_hook[hook]) for hook in wanted]


def _reshapes_heads(sae: SAE[Any]) -> bool:
    return getattr(sae.cfg, "reshape_activations", "none") == "hook_z"


def _activation_widths(model: LanguageModel, hooks: list[str], flat: set[str]) -> dict[str, int]:
    """Run one token through the model and read the width at each hook (the last two axes
    together for the hooks in ``flat``, whose SAEs read all heads at once)."""
    widths: dict[str, int] = {}

    def recorder(name: str) -> Callable[..., None]:
        # Keyed by the name asked for: on a bridge ``hook.name`` is the canonical one.
        def record(activation: torch.Tensor, hook: Any) -> None:
            shape = activation.shape
            widths[name] = shape[-1] * shape[-2] if name in flat else shape[-1]

        return record

    device = next(model.parameters()).device
    tokens = torch.zeros((1, 1), dtype=torch.long, device=device)
    with torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[(h, recorder(h)) for h in hooks])
    return widths
