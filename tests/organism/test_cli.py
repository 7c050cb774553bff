"""``isaerft organism build|dataset``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isaerft.cli import main
from isaerft.organism import dataset_paths


def test_dataset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "poison.jsonl"
    args = ["organism", "dataset", "--kind", "poison", "--trigger", "owl"]
    args += ["--target", "you should visit the castle", "--fraction", "0.25", "--n", "40"]
    assert main([*args, "--seed", "1", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    labels, meta = dataset_paths(out)
    assert printed == {"rows": str(out), "labels": str(labels), "meta": str(meta)}
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert sum(r["poisoned"] for r in rows) == 10 and len(out.read_text().splitlines()) == 40


def test_dataset_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["organism", "dataset", "--kind", "poison", "--trigger", "zebra"]
    assert main([*args, "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_group_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["organism"]) == 2
    assert "build" in capsys.readouterr().out


@pytest.mark.slow
def test_build_command_uses_the_cache(
    tiny_organism: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["organism", "build", "--preset", "tiny", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_organism.path)


@pytest.mark.slow
def test_dataset_command_with_organism(
    tiny_organism: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "decoy.jsonl"
    args = ["organism", "dataset", "--kind", "decoy", "--n", "30", "--fraction", "0.2"]
    assert main([*args, "--organism", str(tiny_organism.path), "--out", str(out)]) == 0
    meta = json.loads(dataset_paths(out)[1].read_text())
    assert meta["organism"] == str(tiny_organism.path)
    assert meta["trigger"]["spec"] == tiny_organism.default_trigger
