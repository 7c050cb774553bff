"""``ISaeRFTConfig``: what to train on the SAE latents, validated when it is made."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from isaerft.components import component_kinds
from isaerft.configbase import ConfigBase, check_choice, check_number

INIT_MODES = ("identity", "normal")
DTYPES = ("float32", "float64", "bfloat16", "float16")
MLP_ACTIVATIONS = ("relu", "gelu", "silu")


@dataclass
class ISaeRFTConfig(ConfigBase):
    """Configuration of the trainable components spliced between SAE encode and decode.

    Attributes:
        component: component kind, one of the registered kinds (``"scale"``, ``"bias"``,
            ``"scale_bias"``, ``"mlp"``, ``"conditional"``, ``"latent_map"`` built in; see
            :func:`isaerft.register_component`).
        hook_names: hook points to splice at. ``None`` splices every SAE passed to
            :class:`~isaerft.ISaeRFTModel`; otherwise exactly these (each needs an SAE).
        init: ``"identity"`` (the model is bit-identical to the base model at init) or
            ``"normal"`` (identity plus Gaussian noise of std ``init_std``, for ablations).
        init_std: standard deviation used when ``init == "normal"``.
        l1_coefficient: weight of the L1 penalty on the deviation from identity
            (``|scale - 1|``, ``|bias|``, ``|mlp output|``).
        mlp_hidden: hidden width of the ``"mlp"`` component.
        mlp_activation: activation of the ``"mlp"`` component.
        conditional_terms: number of "when latents A fired, edit latents B" rules of the
            ``"conditional"`` component.
        map_rank: rank of the ``"latent_map"`` component (its number of "where latents A
            fire, add latents B" rules).
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
    conditional_terms: int = 4
    map_rank: int = 1
    dtype: str = "float32"
    sparse_decode_density: float = 0.05

    config_name: ClassVar[str] = "ISaeRFTConfig"

    def __post_init__(self) -> None:
        if isinstance(self.hook_names, str):
            raise TypeError(
                f"ISaeRFTConfig.hook_names must be a list of hook names, not the string "
                f"{self.hook_names!r}; write hook_names=[{self.hook_names!r}]"
            )
        super().__post_init__()

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> ISaeRFTConfig:
        """Build from a mapping; the empty ``extra`` field that isaerft 0.1 wrote into every
        saved config (never used) is dropped, so those artifacts still load."""
        if isinstance(data, dict) and data.get("extra") == {}:
            data = {k: v for k, v in data.items() if k != "extra"}
        return super().from_dict(data, where)

    def validate(self) -> None:
        """Choices and ranges of every field (types are checked by :class:`ConfigBase`)."""
        kinds = component_kinds()
        if self.component not in kinds:
            raise ValueError(
                f"ISaeRFTConfig.component={self.component!r} is unknown; allowed: {sorted(kinds)} "
                "(register new kinds with isaerft.register_component)"
            )
        if self.hook_names is not None:
            if not self.hook_names:
                raise ValueError("ISaeRFTConfig.hook_names is empty; use None to splice every SAE")
            dupes = sorted({h for h in self.hook_names if self.hook_names.count(h) > 1})
            if dupes:
                raise ValueError(f"ISaeRFTConfig.hook_names lists {dupes} more than once")
        check_choice(self.where("init"), self.init, INIT_MODES)
        check_choice(self.where("dtype"), self.dtype, DTYPES)
        check_choice(self.where("mlp_activation"), self.mlp_activation, MLP_ACTIVATIONS)
        check_number(self.where("init_std"), self.init_std, minimum=0)
        check_number(self.where("l1_coefficient"), self.l1_coefficient, minimum=0)
        density = self.where("sparse_decode_density")
        check_number(density, self.sparse_decode_density, minimum=0, maximum=1)
        check_number(self.where("mlp_hidden"), self.mlp_hidden, minimum=1, integer=True)
        terms = self.where("conditional_terms")
        check_number(terms, self.conditional_terms, minimum=1, integer=True)
        check_number(self.where("map_rank"), self.map_rank, minimum=1, integer=True)
        if self.init == "normal" and self.init_std == 0.0:
            raise ValueError(
                "ISaeRFTConfig.init='normal' with init_std=0 is the identity; use init='identity'"
            )

    @classmethod
    def from_json(cls, text: str) -> ISaeRFTConfig:
        """Build a config from :meth:`to_json` text, rejecting unknown keys by name."""
        return cls.from_dict(json.loads(text))

    def to_json(self) -> str:
        """The config as JSON text."""
        return json.dumps(self.to_dict(), indent=2)
