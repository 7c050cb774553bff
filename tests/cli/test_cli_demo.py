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
    from isaerft.organism.specs import organism

    return organism("tiny")


FAST = ["trainer.max_steps=12", "data.organism_dataset.n=96", "trainer.checkpoint_every_n_steps=0"]


@pytest.mark.slow
def test_demo_reports_every_stage(tiny_org, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = run_demo(
        size="tiny",
        output_dir=tmp_path / "demo",
        overrides=FAST,
        out=lines.append,
        reference_runs=3,
    )
    text = "\n".join(lines)
    for stage in (
        "[1/5]",
        "[2/5]",
        "[3/5]",
        "[4/5]",
        "best-ranked trigger latent",
        "[5/5] audit",
        "verdict:",
        "implicated latents",
        "suspect rows:",
        "total wall time",
    ):
        assert stage in text, stage
    assert f"trigger {tiny_org.default_trigger!r}" in text
    assert result.run.summary["steps"] == 12
    assert result.trigger == tiny_org.default_trigger
    assert all(1 <= r <= 512 for r in result.ranks.values())
    assert (tmp_path / "demo" / "intervention" / "isaerft_config.json").is_file()
    assert result.wall_time_s > 0
    audit_dir = tmp_path / "demo" / "audit"
    for name in ("report.json", "report.md", "report.html", "suspects.jsonl"):
        assert (audit_dir / name).is_file(), name
    assert len(list((audit_dir / "runs").glob("reference-*"))) == 3
    # The audit judges the run the demo trained and printed, not a second candidate.
    assert not (audit_dir / "runs" / "candidate").exists()
    assert result.audit.report["candidate"]["source"] == str(result.run.run_dir)
    assert result.audit.report["comparability"]["same_recipe"]
    assert result.audit.report["evaluation"]["n_poisoned"] > 0


@pytest.mark.slow
def test_demo_command(tiny_org, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(
        ["demo", "--size", "tiny", "--output-dir", str(tmp_path / "d"), "--no-audit", *FAST]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "top moved latents" in printed and "[5/5]" not in printed


def test_demo_refuses_a_folder_with_user_files(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.txt").write_text("mine")
    code = main(["demo", "--size", "tiny", "--output-dir", str(tmp_path), "--no-audit", *FAST])
    printed = capsys.readouterr()
    err = printed.err
    assert code == 2 and str(tmp_path) in err and "not an isaerft run folder" in err
    assert "Traceback" not in err and "[1/" not in printed.out  # refused before the organism
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_failed_demo_start_leaves_no_folder_behind(tiny_org, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "d"
    # A dataset the organism cannot plant fails after the folder was claimed, before training.
    bad = ["data.organism_dataset.trigger=zzz-not-a-word"]
    code = main(["demo", "--size", "tiny", "--output-dir", str(out), "--no-audit", *FAST, *bad])
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert not out.exists()


def test_demo_prints_its_threads_from_the_shared_setting(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import torch

    monkeypatch.delenv("ISAERFT_THREADS", raising=False)
    (tmp_path / "notes.txt").write_text("mine")  # refused right after the threads line
    before = torch.get_num_threads()
    argv = ["demo", "--size", "tiny", "--output-dir", str(tmp_path), "--no-audit", *FAST]
    assert main([*argv, "trainer.threads=2"]) == 2
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first == "isaerft: using 2 torch threads (trainer.threads=2; ISAERFT_THREADS overrides it)"
    )
    assert torch.get_num_threads() == before
