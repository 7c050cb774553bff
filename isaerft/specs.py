"""Spec strings: how recipes, the command line and run records name a model, an SAE, a latent
label file or a dataset, and what they resolve to. The one home of spec parsing.

A spec is one of

* a local folder or file (``runs/model``, ``labels.jsonl``) or a hub name (a TransformerLens
  model such as ``gemma-2-2b``; an SAELens SAE as ``release::sae_id``), used as it is;
* ``<scheme>:<name>[@<build>]`` for a registered scheme: ``organism:tiny`` is the model
  organism's model, SAE or labels (whichever the spec stands for), ``organism:tiny@284cfcbc3eb8``
  one build of it (a *pinned* spec, as a run's record names the build it was trained on).

A scheme is registered with :func:`register_spec_scheme` and resolved by a function of
``(name, build)`` returning a :class:`SpecTarget`. The ``organism`` scheme is registered here by
the dotted path of its resolver in :mod:`isaerft.organism.specs`, imported on the first
``organism:`` spec, so parsing a spec never imports the organism package.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from isaerft.training.recipe import DataConfig, OrganismDatasetSpec

SCHEME_SEPARATOR = ":"
BUILD_SEPARATOR = "@"
SAE_SPEC_SEPARATOR = "::"
ORGANISM_SCHEME = "organism"

IN_MEMORY_MODEL = "<in-memory model>"
IN_MEMORY_SAE = "<in-memory sae>"
"""Specs recorded for runs trained on objects passed in memory: they cannot be reloaded."""


class OrganismBuildError(ValueError):
    """A pinned organism build (``organism:<preset>@<build>``) that is not available here."""


class SpecTarget(Protocol):
    """What a scheme spec resolves to (for ``organism:``, an :class:`isaerft.organism.Organism`)."""

    @property
    def model_dir(self) -> Path:
        """The model folder a model spec of it stands for."""

    @property
    def sae_dir(self) -> Path:
        """The SAE folder an SAE spec of it stands for."""

    @property
    def labels_path(self) -> Path:
        """The latent label file a labels spec of it stands for."""

    @property
    def key(self) -> str:
        """Its build: ``<name>-<build>``, what a pinned spec ``<scheme>:<name>@<build>`` names."""


SpecResolver = Callable[[str, "str | None"], SpecTarget]
"""``resolver(name, build)`` -> the target of ``<scheme>:<name>[@<build>]`` (``build`` is
``None`` for the current one)."""

_SCHEMES: dict[str, SpecResolver | str] = {}


def register_spec_scheme(scheme: str, resolver: SpecResolver | str) -> None:
    """Make ``<scheme>:<name>[@<build>]`` specs resolve through ``resolver(name, build)``.

    ``resolver`` is the function, or its dotted path ``"package.module:function"``, imported
    on the first spec of the scheme (so registering never imports the package behind it).
    """
    if not scheme.isidentifier():
        raise ValueError(f"spec scheme {scheme!r} must be an identifier (letters, digits, _)")
    _SCHEMES[scheme] = resolver


def spec_schemes() -> list[str]:
    """The registered spec schemes, sorted."""
    return sorted(_SCHEMES)


def scheme_resolver(scheme: str) -> SpecResolver:
    """The resolver registered for ``scheme`` (imported now if registered by dotted path)."""
    entry = _SCHEMES.get(scheme)
    if entry is None:
        raise ValueError(
            f"unknown spec scheme {scheme!r}; the known schemes are: {', '.join(spec_schemes())}"
        )
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), name)
        except ImportError as err:
            raise ValueError(
                f"'{scheme}{SCHEME_SEPARATOR}' specs need {module}, which failed to import: {err}"
            ) from err
        if not callable(entry):
            raise TypeError(f"spec scheme {scheme!r}: {module}:{name} is not a function")
        _SCHEMES[scheme] = entry
    return entry


register_spec_scheme(ORGANISM_SCHEME, "isaerft.organism.specs:organism")


# --- parsing ---------------------------------------------------------------------------------


def split_spec(spec: str | Path) -> tuple[str, str, str | None] | None:
    """``"organism:tiny"`` -> ``("organism", "tiny", None)``; ``"organism:tiny@284cfcbc3eb8"``
    -> ``("organism", "tiny", "284cfcbc3eb8")``; a spec of no registered scheme (a folder, a
    hub name) -> ``None``."""
    scheme, sep, rest = str(spec).partition(SCHEME_SEPARATOR)
    if not sep or scheme not in _SCHEMES:
        return None
    name, _, build = rest.partition(BUILD_SEPARATOR)
    return scheme, name, build or None


def organism_size(spec: str | Path) -> str | None:
    """``"organism:small"`` (or a pinned build, ``"organism:small@<build>"``) -> ``"small"``;
    any other spec -> ``None``."""
    parts = split_spec(spec)
    return parts[1] if parts is not None and parts[0] == ORGANISM_SCHEME else None


def split_sae_spec(spec: str | Path) -> tuple[str, str | None]:
    """``"release::sae_id"`` -> ``("release", "sae_id")``; any other SAE spec -> ``(spec, None)``."""
    release, sep, sae_id = str(spec).partition(SAE_SPEC_SEPARATOR)
    return (release, sae_id) if sep else (str(spec), None)


# --- resolving -------------------------------------------------------------------------------


def resolve_target(spec: str | Path) -> SpecTarget | None:
    """What a scheme spec names (e.g. the organism of ``organism:tiny``), else ``None``."""
    parts = split_spec(spec)
    if parts is None:
        return None
    scheme, name, build = parts
    return scheme_resolver(scheme)(name, build)


def resolve_model_spec(spec: str | Path) -> str:
    """A model spec with a scheme spec (``organism:<size>[@<build>]``) replaced by its model
    folder; any other spec as it is."""
    target = resolve_target(spec)
    return str(target.model_dir) if target is not None else str(spec)


def resolve_sae_spec(spec: str | Path) -> str:
    """An SAE spec with a scheme spec (``organism:<size>[@<build>]``) replaced by its SAE
    folder; any other spec as it is."""
    target = resolve_target(spec)
    return str(target.sae_dir) if target is not None else str(spec)


def resolve_labels_spec(labels: str | None, sae: Sequence[str]) -> Path | None:
    """The latent label file: ``labels`` (a path or ``organism:<size>``), else the organism's
    labels when the (single) SAE spec ``sae`` is an organism's (``organism:<size>``, or the
    ``sae`` folder of an organism folder, as a corpus organism's is named), else ``None``."""
    spec = labels
    if spec is None:
        sizes = {organism_size(s) for s in sae}
        if len(sizes) == 1 and None not in sizes:
            spec = sae[0]  # the organism's own labels (of the same build, if pinned)
        elif len(sae) == 1 and split_spec(sae[0]) is None:
            # Imported here, like the scheme's resolver: parsing specs never imports organisms.
            from isaerft.organism.handle import labels_of_organism_sae

            return labels_of_organism_sae(sae[0])
        else:
            return None
    target = resolve_target(spec)
    path = Path(target.labels_path) if target is not None else Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"latent label file {path} not found; fix the recipe's labels")
    return path


def reloadable_spec(spec: str, what: str) -> str:
    """``spec``, or a clear error when it records a ``what`` passed in memory
    (:data:`IN_MEMORY_MODEL`, :data:`IN_MEMORY_SAE`), which cannot be loaded by name."""
    if spec in (IN_MEMORY_MODEL, IN_MEMORY_SAE):
        raise ValueError(
            f"this run was trained on an {what} passed in memory (recorded as {spec!r}), so it "
            "cannot be reloaded by name: pass the same model and SAEs again "
            "(audit_runs(..., model=..., saes=...), or --model/--sae on the command line)"
        )
    return spec


# --- pinning ---------------------------------------------------------------------------------


def spec_keys(specs: Iterable[str]) -> dict[str, str]:
    """``{name: build key}`` of the scheme specs among ``specs`` as they resolve now (e.g.
    ``{"tiny": "tiny-284cfcbc3eb8"}``); the other specs are skipped."""
    keys = {}
    for spec in specs:
        parts = split_spec(spec)
        if parts is not None:
            key = str(scheme_resolver(parts[0])(parts[1], parts[2]).key)
            # Keyed by the name the build carries (``<name>-<build>``), which is not always
            # the one asked for (a resolver may serve another build, as the doc tests do).
            keys[key.rsplit("-", 1)[0] if "-" in key else parts[1]] = key
    return keys


def pin_spec(spec: str, keys: dict[str, str]) -> str:
    """``spec`` pinned to the build it was resolved to: ``"organism:tiny"`` with
    ``keys={"tiny": "tiny-284cfcbc3eb8"}`` -> ``"organism:tiny@284cfcbc3eb8"``; specs of no
    scheme, already pinned, or of a name not in ``keys`` are returned as they are."""
    parts = split_spec(spec)
    if parts is None or parts[2] is not None or parts[1] not in keys:
        return spec
    if not keys[parts[1]].startswith(f"{parts[1]}-"):
        return spec
    scheme, name, _ = parts
    build = keys[name].removeprefix(f"{name}-")
    return f"{scheme}{SCHEME_SEPARATOR}{name}{BUILD_SEPARATOR}{build}"


def unpin_spec(spec: str) -> str:
    """``"organism:tiny@<build>"`` -> ``"organism:tiny"``; any other spec as it is."""
    parts = split_spec(spec)
    return f"{parts[0]}{SCHEME_SEPARATOR}{parts[1]}" if parts is not None else spec


# --- data ------------------------------------------------------------------------------------


def resolve_data_spec(config: DataConfig, model: str, out_dir: Path) -> str:
    """The dataset of a recipe's ``data`` (or ``objective.kl_data``) section: its ``path``, or
    its ``organism_dataset`` generated under ``out_dir`` (:func:`organism_dataset`) for the
    recipe's model spec ``model``."""
    if config.organism_dataset is not None:
        return str(organism_dataset(config.organism_dataset, model, out_dir))
    assert config.path is not None
    return config.path


def organism_dataset(spec: OrganismDatasetSpec, model: str, out_dir: Path) -> Path:
    """Generate (or reuse) the organism dataset of ``spec`` under ``out_dir``; returns its path.

    Its organism is ``spec.organism``, else the one of the model spec ``model`` (of the build
    ``model`` pins, if it pins one)."""
    size = spec.organism or organism_size(model)
    pinned = split_spec(model)
    build = pinned[2] if pinned and pinned[0] == ORGANISM_SCHEME and pinned[1] == size else None
    if size is None:
        raise ValueError(
            "data.organism_dataset needs an organism: set data.organism_dataset.organism "
            "(tiny/small) or use model: organism:<size>"
        )
    # Imported here: torch (through _io) and the organism only for organism datasets.
    from isaerft._io import read_json, write_json

    out = out_dir / f"{spec.kind}.jsonl"
    wanted = {k: v for k, v in dataclasses.asdict(spec).items() if v is not None}
    meta_path = out_dir / f"{spec.kind}.spec.json"
    # Regenerate only when the spec changed: ranks > 0 and resumed runs reuse the file.
    if out.is_file() and meta_path.is_file() and read_json(meta_path) == wanted:
        return out
    from isaerft.organism import make_dataset

    org = scheme_resolver(ORGANISM_SCHEME)(size, build)
    kwargs: dict[str, Any] = {"n": spec.n, "seed": spec.seed, "organism": org}
    for name in ("trigger", "target", "fraction"):
        if getattr(spec, name) is not None:
            kwargs[name] = getattr(spec, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_dataset(spec.kind, out, **kwargs)
    write_json(meta_path, wanted)
    return out
