"""``ISaeRFTConfig``: what to train on the SAE latents, validated when it is made."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from isaerft.components import component_kinds

INIT_MODES = ("identity", "normal")
DTYPES = ("float32", "float64", "bfloat16", "float16")
MLP_ACTIVATIONS = ("relu", "gelu", "silu")


@dataclass
class ISaeRFTConfig:
    """Configuration of the trainable components spliced between SAE encode and decode.

    Attributes:
        component: component kind, one of the registered kinds (``"scale"``, ``"bias"``,
            ``"scale_bias"``, ``"mlp"`` built in; see :func:`isaerft.register_component`).
        hook_names: hook points to splice at. ``None`` splices every SAE passed to
            :class:`~isaerft.ISaeRFTModel`; otherwise exactly these (each needs an SAE).
        init: ``"identity"`` (the model is bit-identical to the base model at init) or
            ``"normal"`` (identity plus Gaussian noise of std ``init_std``, for ablations).
        init_std: standard deviation used when ``init == "normal"``.
        l1_coefficient: weight of the L1 penalty on the deviation from identity
            (``|scale - 1|``, ``|bias|``, ``|mlp output|``).
        mlp_hidden: hidden width of the ``"mlp"`` component.
        mlp_activation: activation of the ``"mlp"`` component.
        dtype: dtype of the trainable parameters (activations are cast at the site).
        sparse_decode_density: the decoder uses a gather over active latents instead of a
            dense matmul when at most this fraction of latents is active; ``0`` disables it.
    """

    component: str = "scale"
    hook_names: list[str] | None = None
    init: str = "identity"
    init_std: float = 0.01
    l1_coefficient: float = 0.0
    mlp_hidden: int = 64
    mlp_activation: str = "gelu"
    dtype: str = "float32"
    sparse_decode_density: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kinds = component_kinds()
        if self.component not in kinds:
            raise ValueError(
                f"ISaeRFTConfig.component={self.component!r} is unknown; allowed: {sorted(kinds)} "
                "(register new kinds with isaerft.register_component)"
            )
        if self.hook_names is not None:
            if isinstance(self.hook_names, str):
                raise TypeError(
                    f"ISaeRFTConfig.hook_names must be a list of hook names, not the string "
                    f"{self.hook_names!r}; write hook_names=[{self.hook_names!r}]"
                )
            self.hook_names = list(self.hook_names)
            if not self.hook_names:
                raise ValueError("ISaeRFTConfig.hook_names is empty; use None to splice every SAE")
            dupes = sorted({h for h in self.hook_names if self.hook_names.count(h) > 1})
            if dupes:
                raise ValueError(f"ISaeRFTConfig.hook_names lists {dupes} more than once")
        _check_choice("init", self.init, INIT_MODES)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("mlp_activation", self.mlp_activation, MLP_ACTIVATIONS)
        _check_non_negative("init_std", self.init_std)
        _check_non_negative("l1_coefficient", self.l1_coefficient)
        if not 0.0 <= self.sparse_decode_density <= 1.0:
            raise ValueError(
                f"ISaeRFTConfig.sparse_decode_density={self.sparse_decode_density} must be in [0, 1]"
            )
        if not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1:
            raise ValueError(f"ISaeRFTConfig.mlp_hidden={self.mlp_hidden!r} must be an int >= 1")
        if self.init == "normal" and self.init_std == 0.0:
            raise ValueError(
                "ISaeRFTConfig.init='normal' with init_std=0 is the identity; use init='identity'"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ISaeRFTConfig:
        """Build a config from :meth:`to_dict` output, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown ISaeRFTConfig field(s) {unknown}; valid fields: {sorted(known)}"
            )
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ISaeRFTConfig:
        return cls.from_dict(json.loads(text))


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(
            f"ISaeRFTConfig.{name}={value!r} is not allowed; use one of {list(allowed)}"
        )


def _check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"ISaeRFTConfig.{name}={value!r} must be a number >= 0")
