"""isaerft: interpretable fine-tuning through sparse-autoencoder latents.

Splice an SAELens SAE into a frozen TransformerLens model, train small per-latent components
between encode and decode, and read the trained parameters as the explanation.

The public names are imported on first use, so ``import isaerft.cli`` (and ``isaerft
--help``) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isaerft.artifact import read_intervention_config
    from isaerft.components import LatentComponent, component_kinds, register_component
    from isaerft.config import ISaeRFTConfig
    from isaerft.export import SteeringVectors, steer, vectors_from_model
    from isaerft.loading import load_model, load_sae, save_model
    from isaerft.model import ISaeRFTModel
    from isaerft.site import sae_fingerprint

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "read_intervention_config": "isaerft.artifact",
    "LatentComponent": "isaerft.components",
    "component_kinds": "isaerft.components",
    "register_component": "isaerft.components",
    "ISaeRFTConfig": "isaerft.config",
    "SteeringVectors": "isaerft.export",
    "steer": "isaerft.export",
    "vectors_from_model": "isaerft.export",
    "load_model": "isaerft.loading",
    "load_sae": "isaerft.loading",
    "save_model": "isaerft.loading",
    "ISaeRFTModel": "isaerft.model",
    "sae_fingerprint": "isaerft.site",
}

__all__ = [
    "ISaeRFTConfig",
    "ISaeRFTModel",
    "LatentComponent",
    "SteeringVectors",
    "__version__",
    "component_kinds",
    "load_model",
    "load_sae",
    "read_intervention_config",
    "register_component",
    "sae_fingerprint",
    "save_model",
    "steer",
    "vectors_from_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isaerft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
