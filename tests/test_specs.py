"""Spec strings (isaerft.specs): parsing, the scheme registry, resolving and pinning."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from isaerft import specs
from isaerft.specs import (
    organism_size,
    pin_spec,
    register_spec_scheme,
    resolve_labels_spec,
    resolve_model_spec,
    resolve_sae_spec,
    scheme_resolver,
    spec_keys,
    spec_schemes,
    split_sae_spec,
    split_spec,
    unpin_spec,
)


@dataclass(frozen=True)
class Target:
    root: Path
    name: str
    build: str | None

    @property
    def model_dir(self) -> Path:
        return self.root / self.name / "model"

    @property
    def sae_dir(self) -> Path:
        return self.root / self.name / "sae"

    @property
    def labels_path(self) -> Path:
        return self.root / self.name / "labels.jsonl"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.build or 'current'}"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schemes registered in a test are gone after it."""
    monkeypatch.setattr(specs, "_SCHEMES", dict(specs._SCHEMES))


def test_organism_is_a_registered_scheme() -> None:
    assert "organism" in spec_schemes()
    assert split_spec("organism:tiny") == ("organism", "tiny", None)
    assert split_spec("organism:tiny@284cfcbc3eb8") == ("organism", "tiny", "284cfcbc3eb8")
    assert organism_size("organism:small@284cfcbc3eb8") == "small"
    for other in ("runs/model", "gemma-2-2b", "gemma-scope-2b-pt-res::layer_12", "zoo:x"):
        assert split_spec(other) is None and organism_size(other) is None
        assert resolve_model_spec(other) == resolve_sae_spec(other) == other


def test_unknown_scheme_names_the_known_ones(registry: None) -> None:
    register_spec_scheme("zoo", lambda name, build: Target(Path("/z"), name, build))
    with pytest.raises(ValueError) as err:
        scheme_resolver("nosuch")
    message = str(err.value)
    assert "\n" not in message
    assert message == "unknown spec scheme 'nosuch'; the known schemes are: organism, zoo"


def test_a_registered_scheme_resolves(registry: None, tmp_path: Path) -> None:
    register_spec_scheme("zoo", lambda name, build: Target(tmp_path, name, build))
    assert split_spec("zoo:owl@b1") == ("zoo", "owl", "b1")
    assert resolve_model_spec("zoo:owl") == str(tmp_path / "owl" / "model")
    assert resolve_sae_spec("zoo:owl@b1") == str(tmp_path / "owl" / "sae")
    assert spec_keys(["zoo:owl", "runs/model", ""]) == {"owl": "owl-current"}
    (tmp_path / "owl").mkdir()
    (tmp_path / "owl" / "labels.jsonl").write_text("", encoding="utf-8")
    assert resolve_labels_spec(None, ["zoo:owl"]) is None  # only organism SAEs bring labels
    assert resolve_labels_spec("zoo:owl", ["zoo:owl"]) == tmp_path / "owl" / "labels.jsonl"
    with pytest.raises(FileNotFoundError, match=r"latent label file .* not found"):
        resolve_labels_spec("zoo:cat", [])


def test_a_scheme_registered_by_dotted_path_is_imported_on_first_use(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "zoo_resolver.py").write_text(
        "from pathlib import Path\n"
        "from types import SimpleNamespace\n"
        "def resolve(name, build):\n"
        "    return SimpleNamespace(model_dir=Path('/zoo') / name, key=f'{name}-{build}')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zoo_resolver", raising=False)
    register_spec_scheme("zoo", "zoo_resolver:resolve")
    assert "zoo_resolver" not in sys.modules
    assert resolve_model_spec("zoo:owl") == str(Path("/zoo") / "owl")
    assert "zoo_resolver" in sys.modules
    register_spec_scheme("broken", "no_such_module_here:resolve")
    with pytest.raises(ValueError, match="'broken:' specs need no_such_module_here, which failed"):
        resolve_model_spec("broken:x")


def test_a_scheme_is_an_identifier(registry: None) -> None:
    with pytest.raises(ValueError, match="must be an identifier"):
        register_spec_scheme("no good", "x:y")


def test_pinning() -> None:
    keys = {"tiny": "tiny-284cfcbc3eb8"}
    assert pin_spec("organism:tiny", keys) == "organism:tiny@284cfcbc3eb8"
    for unchanged in ("organism:tiny@0123", "organism:small", "runs/model"):
        assert pin_spec(unchanged, keys) == unchanged
    assert unpin_spec("organism:tiny@284cfcbc3eb8") == "organism:tiny"
    assert unpin_spec("runs/model") == "runs/model"


def test_sae_release_specs() -> None:
    assert split_sae_spec("gemma-scope::layer_12/width_16k") == (
        "gemma-scope",
        "layer_12/width_16k",
    )
    assert split_sae_spec("runs/sae") == ("runs/sae", None)


def test_parsing_a_spec_imports_no_organism() -> None:
    code = (
        "import sys, isaerft.specs as s; "
        "assert s.split_spec('organism:tiny') and s.resolve_model_spec('runs/m') == 'runs/m'; "
        "assert 'isaerft.organism' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_resolver_serving_another_build_does_not_pin_the_asked_name(registry: None) -> None:
    # A resolver may hand back another name's build (the doc tests serve tiny for small): the
    # key says which, so "zoo:small" is never pinned to a "tiny-..." build.
    register_spec_scheme("zoo", lambda name, build: Target(Path("/z"), "tiny", build))
    keys = spec_keys(["zoo:small"])
    assert keys == {"tiny": "tiny-current"}
    assert pin_spec("zoo:small", keys) == "zoo:small"
    assert pin_spec("zoo:small", {"small": "tiny-current"}) == "zoo:small"


def test_an_organism_folders_sae_brings_its_labels(tiny_organism: Any, tmp_path: Path) -> None:
    """A corpus organism has no ``organism:`` spec: its ``sae`` folder names it."""
    org = tiny_organism
    assert resolve_labels_spec(None, [str(org.sae_dir)]) == org.labels_path
    assert resolve_labels_spec(None, [str(org.sae_dir), str(org.sae_dir)]) is None
    copy = tmp_path / "sae"
    shutil.copytree(org.sae_dir, copy)
    assert resolve_labels_spec(None, [str(copy)]) is None  # no organism around it
