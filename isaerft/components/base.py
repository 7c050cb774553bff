"""The component interface and the registry that maps a kind name to its class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from isaerft.config import ISaeRFTConfig
    from isaerft.site import LinearDecoder


class LatentComponent(nn.Module, ABC):
    """A trainable map on SAE latents, stored as its deviation from the identity.

    Subclasses implement :meth:`latent_delta` (``component(f) - f``) and :meth:`edits`;
    they may override :meth:`decoded_delta` to use structure (sparsity, constancy) that
    makes decoding cheaper. With ``config.init == "identity"`` every subclass must return
    an exact zero delta, which is what makes the spliced model bit-identical at init.
    """

    parameter_l1: ClassVar[bool] = False
    """Whether the sparsity penalty is the summed ``|value|`` of the tensors :meth:`edits`
    returns, which are then the parameters themselves (0 is the identity). Only such kinds can
    train with ``optim.l1_update: proximal``, which shrinks exactly these parameters; a kind
    whose penalty depends on the input (``mlp``, ``conditional``) leaves it ``False``."""

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__()
        self.d_sae = d_sae
        self.param_dtype = getattr(torch, config.dtype)

    @abstractmethod
    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        """``component(f) - f`` for latents ``f`` of shape ``(..., d_sae)``."""

    @abstractmethod
    def edits(self) -> dict[str, torch.Tensor]:
        """Per-latent parameters as deviations from identity, each of shape ``(d_sae,)``."""

    def decoded_delta(
        self, f: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(D(component(f)) - D(f), l1)``: the change in SAE-input space and the
        L1 norm of the deviation from identity used by the sparsity regulariser."""
        delta = self.latent_delta(f)
        return decoder.dense(delta), delta.abs().sum(-1).mean()

    def takes_active_codes(self, k: int) -> bool:
        """Whether :meth:`active_decoded_delta` should serve ``k`` active latents per token
        (sites then skip building dense codes)."""
        return False

    def active_decoded_delta(
        self, values: torch.Tensor, indices: torch.Tensor, decoder: LinearDecoder
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decoded_delta` from the active codes only: ``values``/``indices`` of shape
        ``(n, k)`` (inactive entries have value 0); returns a delta of shape ``(n, d_in)``."""
        raise NotImplementedError(f"{type(self).__name__} needs dense codes")

    def needs_full_context(self) -> bool:
        """Whether the edit at a position reads earlier positions' latents, so every forward
        must see the whole sequence (generation then runs without a KV cache)."""
        return False

    def constant_shift(self) -> torch.Tensor | None:
        """The latent-space vector ``c`` when ``component(f) - f == c`` for every input ``f``,
        else ``None``.

        A constant shift decodes to one exact residual vector (``c @ W_dec``), which is what
        makes an export exact; an input-dependent edit is averaged over data instead. Kinds
        whose edit does not depend on ``f`` override this; the default is input-dependent.
        """
        return None

    def magnitude(self) -> torch.Tensor:
        """How far each latent moved: the sum of ``|edit|`` over this component's edits."""
        edits = list(self.edits().values())
        total = edits[0].detach().abs().float()
        for edit in edits[1:]:
            total = total + edit.detach().abs().float()
        return total


def top_entries(values: torch.Tensor, top: int) -> list[tuple[int, float]]:
    """The ``top`` entries of a 1-d tensor by magnitude, as ``(index, value)``, largest first
    (how the rule-reading kinds list the latents a rule reads and writes)."""
    values = values.detach()
    idx = torch.argsort(values.abs(), descending=True)[:top]
    return [(int(i), float(values[i])) for i in idx]


_REGISTRY: dict[str, type[LatentComponent]] = {}


def register_component(kind: str, cls: type[LatentComponent]) -> type[LatentComponent]:
    """Make ``cls`` available as ``ISaeRFTConfig(component=kind)``."""
    if not (isinstance(cls, type) and issubclass(cls, LatentComponent)):
        raise TypeError(
            f"register_component({kind!r}, ...) needs a LatentComponent subclass, got {cls!r}"
        )
    if kind in _REGISTRY and _REGISTRY[kind] is not cls:
        raise ValueError(
            f"component kind {kind!r} is already registered to {_REGISTRY[kind].__name__}"
        )
    _REGISTRY[kind] = cls
    return cls


def component_kinds() -> dict[str, type[LatentComponent]]:
    """The registered kinds, name -> class."""
    return dict(_REGISTRY)


def build_component(kind: str, d_sae: int, config: ISaeRFTConfig) -> LatentComponent:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; registered kinds: {sorted(_REGISTRY)}")
    return _REGISTRY[kind](d_sae, config)
