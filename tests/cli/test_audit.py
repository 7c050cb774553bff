"""``isaerft audit`` and ``isaerft audit-dataset`` from the command line (tiny setup)."""

from __future__ import annotations

import json

from audit.helpers import tiny_audit, tiny_runs

from isaerft.audit import read_report
from isaerft.cli import main

__all__ = ["tiny_audit", "tiny_runs"]


def test_audit_command(tiny_runs, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["audit", str(tiny_runs.candidate), "--reference", *map(str, tiny_runs.references)]
    argv += ["--reference-data", str(tiny_runs.setup.clean), "--no-baselines", "--out", str(out)]
    kept = tmp_path / "kept"
    assert main([*argv, "--cache-dir", str(kept)]) == 0
    printed = capsys.readouterr().out
    assert "verdict:" in printed and "suspect rows:" in printed
    report = read_report(out)
    assert report["verdict"]["n_reference_runs"] == 3
    assert (out / "suspects.jsonl").is_file() and (out / "report.html").is_file()
    # What it computed from the trusted rows alone is kept for the next audit against them:
    # their codes and the association search's null (the audited rows' codes in memory only).
    assert report["association_search"] is not None
    assert report["config"]["cache_dir"] == str(kept)
    assert len(list(kept.glob("association-null-*.json"))) == 1
    assert len(list(kept.glob("codes-*.safetensors"))) == 1
    assert main([*argv, "--cache-dir", str(kept), "--out", str(tmp_path / "again")]) == 0
    again = read_report(tmp_path / "again")
    assert again["verdict"] == report["verdict"]
    assert again["association_search"] == report["association_search"]
    assert len(list(kept.iterdir())) == 2


def test_audit_dataset_command(tiny_audit, tmp_path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "intervention: {component: scale, l1_coefficient: 0.0001}\n"
        "data: {batch_size: 8}\n"
        "optim: {lr: 0.05}\n"
        "trainer: {max_steps: 4}\n"
    )
    out = tmp_path / "audit"
    argv = [
        "audit-dataset", str(tiny_audit.poison), "--reference", str(tiny_audit.clean),
        "--model", str(tiny_audit.model_dir), "--sae", str(tiny_audit.sae_dir),
        "--recipe", str(recipe), "--runs", "3", "--no-baselines", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    report = read_report(out)
    assert report["training"]["steps"] == 4
    assert len(report["references"]) == 3
    assert "row_auroc" in report["evaluation"]  # poison.labels.jsonl sits next to the data
    assert len((out / "suspects.jsonl").read_text().splitlines()) == 48
    assert "[audit] training reference run 3/3" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tiny_audit, tmp_path, capsys) -> None:
    argv = ["audit", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}) + "\n")
    argv = [
        "audit-dataset", str(bad), "--reference", str(tmp_path / "missing.jsonl"),
        "--model", str(tiny_audit.model_dir), "--sae", str(tiny_audit.sae_dir), "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 2
    assert "reference dataset" in capsys.readouterr().err


def test_audit_dataset_prints_the_recipe_threads(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ISAERFT_THREADS", raising=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("trainer: {max_steps: 4, threads: 2}\n")
    argv = [
        "audit-dataset", str(tmp_path / "s.jsonl"), "--reference", str(tmp_path / "r.jsonl"),
        "--model", "m", "--sae", "s", "--recipe", str(recipe), "--out", str(tmp_path / "o"),
        "--runs", "2",  # refused by the audit, after the threads line
    ]  # fmt: skip
    assert main(argv) == 2
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0].startswith(
        "isaerft: using 2 torch threads (trainer.threads=2"
    )
    assert "at least 3 reference runs" in printed.err
    recipe.write_text("trainer: {threads: 0}\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "recipe trainer.threads=0 is invalid" in err and "\n" not in err
