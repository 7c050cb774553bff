"""The format table: one entry per format, shared by the CLI and load_vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isaerft.cli.export import FORMATS
from isaerft.export import formats as formats_module
from isaerft.export import load_vectors, vectors_from_model
from isaerft.export.formats import VectorFormat, WriteOptions, format_of_file, get_format


def test_the_cli_offers_exactly_the_registered_formats():
    assert list(FORMATS) == list(formats_module.vector_formats())


def test_unknown_format_names_the_known_ones():
    with pytest.raises(ValueError, match=r"use one of .*gguf"):
        get_format("onnx")


@pytest.mark.parametrize(("name", "suffix"), [("safetensors", ".safetensors"),
                                              ("steering-vectors", ".safetensors")])  # fmt: skip
def test_each_written_file_is_recognised_as_its_format(make_model, tmp_path, name, suffix):
    vectors = vectors_from_model(make_model("bias"))
    path = get_format(name).write(vectors, tmp_path / f"v{suffix}", WriteOptions())
    assert format_of_file(path).name == name


class _TextFormat(VectorFormat):
    """A toy format: one line per hook, ``hook v0 v1 ...``."""

    name = "text-test"

    def write(self, vectors, path: Path, options: WriteOptions) -> Path:
        lines = [" ".join([h, *map(str, v.tolist())]) for h, v in vectors.as_dict().items()]
        path.write_text("\n".join(lines))
        return path

    def recognises(self, path: Path) -> bool:
        return path.suffix == ".vec"

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        rows = [line.split() for line in path.read_text().splitlines()]
        return {r[0]: torch.tensor([float(x) for x in r[1:]]) for r in rows}


def test_a_new_format_is_one_class_plus_one_registration(make_model, tmp_path):
    formats_module.register_format(_TextFormat())
    try:
        vectors = vectors_from_model(make_model("bias"))
        path = get_format("text-test").write(vectors, tmp_path / "v.vec", WriteOptions())
        loaded = load_vectors(path)
        torch.testing.assert_close(loaded, vectors.as_dict())
    finally:
        formats_module._FORMATS.pop("text-test")
