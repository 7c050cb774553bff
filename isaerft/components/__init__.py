"""Trainable components on SAE latents. A new kind is one class plus one ``register_component``.

A kind answers for itself wherever the library needs to know something about it: its edits
(:meth:`LatentComponent.edits`), its cheap decode paths, and whether its edit is a constant
shift (:meth:`LatentComponent.constant_shift`), which decides whether an export is exact.
"""

from isaerft.components.base import (
    LatentComponent,
    build_component,
    component_kinds,
    register_component,
)
from isaerft.components.bias import BiasComponent
from isaerft.components.conditional import ConditionalComponent
from isaerft.components.latent_map import LatentMapComponent
from isaerft.components.mlp import MLPComponent
from isaerft.components.scale import ScaleComponent
from isaerft.components.scale_bias import ScaleBiasComponent

register_component("scale", ScaleComponent)
register_component("bias", BiasComponent)
register_component("scale_bias", ScaleBiasComponent)
register_component("mlp", MLPComponent)
register_component("conditional", ConditionalComponent)
register_component("latent_map", LatentMapComponent)

__all__ = [
    "BiasComponent",
    "ConditionalComponent",
    "LatentComponent",
    "LatentMapComponent",
    "MLPComponent",
    "ScaleBiasComponent",
    "ScaleComponent",
    "build_component",
    "component_kinds",
    "register_component",
]
