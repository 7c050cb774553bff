"""``isaerft demo``: organism -> poisoned data -> trained scales -> labelled top latents.

Runs on the tiny organism (cached on disk after its first build) with a handful of steps; the
small organism and the full step count are what `make demo` runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from isaerft.cli import main
from isaerft.cli.demo import run_demo


@pytest.fixture(scope="module")
def tiny_org():  # type: ignore[no-untyped-def]
    from isaerft.training import resolve

    return resolve.organism("tiny")


FAST = ["trainer.max_steps=12", "data.organism_dataset.n=96", "trainer.checkpoint_every_n_steps=0"]


@pytest.mark.slow
def test_demo_reports_every_stage(tiny_org, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = run_demo(size="tiny", output_dir=tmp_path / "demo", overrides=FAST, out=lines.append)
    text = "\n".join(lines)
    for stage in (
        "[1/4]",
        "[2/4]",
        "[3/4]",
        "[4/4]",
        "best-ranked trigger latent",
        "total wall time",
    ):
        assert stage in text, stage
    assert f"trigger {tiny_org.default_trigger!r}" in text
    assert result.run.summary["steps"] == 12
    assert result.trigger == tiny_org.default_trigger
    assert all(1 <= r <= 512 for r in result.ranks.values())
    assert (tmp_path / "demo" / "intervention" / "isaerft_config.json").is_file()
    assert result.wall_time_s > 0


@pytest.mark.slow
def test_demo_command(tiny_org, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["demo", "--size", "tiny", "--output-dir", str(tmp_path / "d"), *FAST])
    assert code == 0
    assert "top moved latents" in capsys.readouterr().out
