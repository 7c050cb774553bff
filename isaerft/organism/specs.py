"""The ``organism`` spec scheme: ``organism:<preset>[@<build>]`` names the model organism.

:mod:`isaerft.specs` registers :func:`organism` as the scheme's resolver by its dotted path and
imports this module on the first ``organism:`` spec, so the rest of isaerft never imports the
organism package to parse a spec.
"""

from __future__ import annotations

from isaerft._io import read_json
from isaerft.organism.build import ORGANISM_PRESETS, build_organism, organism_config
from isaerft.organism.handle import Organism, cache_dir, load_organism
from isaerft.specs import ORGANISM_SCHEME, SCHEME_SEPARATOR, OrganismBuildError

_PREFIX = ORGANISM_SCHEME + SCHEME_SEPARATOR
_ORGANISMS: dict[tuple[str, str | None], Organism] = {}


def organism(preset: str, build: str | None = None) -> Organism:
    """The organism ``organism:<preset>[@<build>]`` (see :func:`find_organism`), memoised per
    process (it is cached on disk)."""
    if (preset, build) not in _ORGANISMS:
        _ORGANISMS[preset, build] = find_organism(preset, build)
    return _ORGANISMS[preset, build]


def find_organism(preset: str, build: str | None = None) -> Organism:
    """The organism of ``"organism:<preset>[@<build>]"``.

    Without ``build``: the preset's current build (seed 0), built on first use and then read
    from the cache. With ``build`` (the hash of the cache key ``<preset>-<build>``, as recorded
    in a run's ``run.json``): exactly that build, from the cache, or built if it is the current
    one. A build that changed since (another isaerft, another build version) and is gone from
    the cache raises :class:`isaerft.specs.OrganismBuildError`: weights are never loaded
    against another organism than the one they were trained on.
    """
    if preset not in ORGANISM_PRESETS:
        raise ValueError(
            f"unknown organism preset in {_PREFIX + preset!r}; use "
            f"organism:<preset> with one of {sorted(ORGANISM_PRESETS)}"
        )
    if build is None or organism_config(preset, seed=0).hash() == build:
        return build_organism(preset, seed=0)
    key = f"{preset}-{build}"
    folder = cache_dir() / "organisms" / key
    meta = folder / "organism.json"
    if meta.is_file() and read_json(meta).get("key") == key:
        return load_organism(folder)
    current = f"{preset}-{organism_config(preset, seed=0).hash()}"
    raise OrganismBuildError(
        f"organism build {key} ({_PREFIX}{preset} as it was built then) is not in "
        f"the organism cache {folder.parent}, and this isaerft builds {_PREFIX}"
        f"{preset} as {current}: train the run again on the current organism, or restore "
        f"{key} into {folder.parent} (set ISAERFT_CACHE to the cache that holds it, or build it "
        "with the isaerft version that trained the run)"
    )
