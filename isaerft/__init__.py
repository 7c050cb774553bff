"""isaerft: interpretable fine-tuning through sparse-autoencoder latents.

Splice an SAELens SAE into a frozen TransformerLens model, train small per-latent components
between encode and decode, and read the trained parameters as the explanation.
"""

from isaerft.artifact import read_intervention_config
from isaerft.components import LatentComponent, component_kinds, register_component
from isaerft.config import ISaeRFTConfig
from isaerft.export import SteeringVectors, steer, vectors_from_model
from isaerft.loading import load_model, load_sae, save_model
from isaerft.model import ISaeRFTModel
from isaerft.site import sae_fingerprint

__version__ = "0.1.0"

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
