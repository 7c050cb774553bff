"""isaerft.runs: which folders may be written as runs, the run lock, finished-run checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from isaerft.runs import (
    INTERVENTION_DIR,
    RUN_FILE,
    RUN_FORMAT,
    RUN_MARKER,
    SUMMARY_FILE,
    RunFolderError,
    check_finished,
    check_run_dir,
    claim_run_dir,
    intervention_of,
    locked_run_dir,
    read_run_record,
    remove_results,
)


def fake_run(path: Path, **summary: object) -> Path:
    """A run folder as training leaves it (no model needed to test the folder rules)."""
    (path / INTERVENTION_DIR).mkdir(parents=True)
    (path / INTERVENTION_DIR / "isaerft_config.json").write_text("{}")
    (path / INTERVENTION_DIR / "isaerft_weights.safetensors").write_bytes(b"weights")
    (path / RUN_FILE).write_text(json.dumps({"format": RUN_FORMAT, "format_version": 1}))
    (path / "logs").mkdir()
    (path / "metrics.csv").write_text("step\n")
    (path / SUMMARY_FILE).write_text(json.dumps(summary))
    return path


def test_new_and_empty_folders_may_be_written(tmp_path: Path) -> None:
    assert check_run_dir(tmp_path / "new") == []
    assert check_run_dir(tmp_path) == []
    assert claim_run_dir(tmp_path / "new" / "deeper").replaced == []
    assert (tmp_path / "new" / "deeper" / RUN_MARKER).is_file()
    # A claimed folder is a run even before run.json exists (e.g. data generated first).
    (tmp_path / "new" / "deeper" / "data").mkdir()
    assert check_run_dir(tmp_path / "new" / "deeper") == []


@pytest.mark.parametrize("layout", ["notes.txt", "logs/n.txt", "checkpoints/x", "run.json"])
def test_a_folder_with_user_files_is_refused_and_left_alone(tmp_path: Path, layout: str) -> None:
    user_file = tmp_path / layout
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_text('{"format": "mine"}')
    for call in (check_run_dir, claim_run_dir, remove_results):
        with pytest.raises(
            RunFolderError, match=f"{re.escape(str(tmp_path))}.* not an isaerft run folder"
        ):
            call(tmp_path)
    assert user_file.read_text() == '{"format": "mine"}'
    assert not (tmp_path / RUN_MARKER).exists()


def test_a_file_is_not_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        claim_run_dir(tmp_path / "f")
    with pytest.raises(RunFolderError, match=r"cannot write to .*Not a directory"):
        claim_run_dir(tmp_path / "f" / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunFolderError, match="cannot write to"):
            claim_run_dir(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_an_earlier_run_is_replaced_but_only_its_results(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    (run / "my-notes.txt").write_text("keep")
    (run / "data").mkdir()
    assert check_run_dir(run) == [INTERVENTION_DIR, SUMMARY_FILE, "metrics.csv", "logs"]
    assert remove_results(run) == [INTERVENTION_DIR, SUMMARY_FILE, "metrics.csv", "logs"]
    assert sorted(p.name for p in run.iterdir()) == ["data", "my-notes.txt", RUN_FILE]


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with locked_run_dir(run), pytest.raises(RunFolderError, match="another"), locked_run_dir(run):
        pass
    with locked_run_dir(tmp_path / "run"):  # released: free again
        pass


class FailedStart(RuntimeError):
    """Stands in for bad data or a model that does not load, before run.json is written."""


def _failed_start(path: Path) -> None:
    with pytest.raises(FailedStart), locked_run_dir(path):
        (path / "data").mkdir()  # e.g. a generated organism dataset
        (path / "data" / "poison.jsonl").write_text("{}\n")
        raise FailedStart


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_failed_start_leaves_the_folder_as_it_was_found(tmp_path: Path) -> None:
    # A new folder (and the parents created for it) goes away again.
    _failed_start(tmp_path / "new" / "deeper")
    assert _tree(tmp_path) == []
    # An empty folder stays, empty and unmarked.
    (tmp_path / "empty").mkdir()
    _failed_start(tmp_path / "empty")
    assert _tree(tmp_path) == ["empty"]
    # An earlier run keeps everything it had; only what the attempt added goes.
    run = fake_run(tmp_path / "run")
    (run / "my-notes.txt").write_text("keep")
    before = _tree(run)
    _failed_start(run)
    assert _tree(run) == before and (run / "my-notes.txt").read_text() == "keep"
    # A committed claim (run.json written: the training started) is kept whatever happens.
    with pytest.raises(FailedStart), locked_run_dir(tmp_path / "started") as claim:
        claim.commit()
        raise FailedStart
    assert _tree(tmp_path / "started") == [RUN_MARKER]
    # An outer claim (the demo's) keeps a folder where an inner training wrote run.json.
    outer = claim_run_dir(tmp_path / "demo")
    (tmp_path / "demo" / RUN_FILE).write_text("{}")
    outer.undo()
    assert _tree(tmp_path / "demo") == sorted([RUN_MARKER, RUN_FILE])


def test_a_failed_start_never_removes_a_users_files(tmp_path: Path) -> None:
    run = tmp_path / "new"
    with pytest.raises(FailedStart), locked_run_dir(run):
        (run / "notes.txt").write_text("mine")  # written by the user meanwhile
        raise FailedStart
    assert _tree(tmp_path) == ["new", "new/notes.txt"]


def test_the_lock_holds_against_another_process(tmp_path: Path) -> None:
    claim_run_dir(tmp_path)
    holder = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / RUN_MARKER)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
        busy = pytest.raises(RunFolderError, match="another isaerft training is writing")
        with busy, locked_run_dir(tmp_path):
            pass
    finally:
        proc.kill()
        proc.wait()
    with locked_run_dir(tmp_path):  # a killed holder leaves no stale lock
        pass


def test_unfinished_or_mixed_runs_are_refused(tmp_path: Path) -> None:
    from isaerft._io import sha256_file

    weights = "intervention/isaerft_weights.safetensors"
    run = fake_run(tmp_path / "unfinished")
    (run / SUMMARY_FILE).unlink()
    with pytest.raises(RunFolderError, match="unfinished run"):
        intervention_of(run)

    run = fake_run(tmp_path / "other-id", run_id="b")
    record = json.loads((run / RUN_FILE).read_text())
    (run / RUN_FILE).write_text(json.dumps({**record, "run_id": "a"}))
    with pytest.raises(RunFolderError, match="mixes two runs"):
        check_finished(run)

    run = fake_run(tmp_path / "other-weights", intervention_sha256="0" * 64)
    with pytest.raises(RunFolderError, match="not the intervention this run saved"):
        check_finished(run)

    run = fake_run(tmp_path / "ok")
    (run / SUMMARY_FILE).write_text(json.dumps({"intervention_sha256": sha256_file(run / weights)}))
    assert intervention_of(run) == run / INTERVENTION_DIR
    legacy = fake_run(tmp_path / "legacy", steps=3)  # no ids or hashes recorded: as before
    assert check_finished(legacy) == {"steps": 3}


def test_bare_interventions_and_missing_paths(tmp_path: Path) -> None:
    bare = fake_run(tmp_path / "run") / INTERVENTION_DIR
    assert intervention_of(bare) == bare
    with pytest.raises(FileNotFoundError, match="not found"):
        intervention_of(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        intervention_of(tmp_path)


def test_a_truncated_run_record_names_the_file(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    (run / RUN_FILE).write_text('{"format": "isaer')
    with pytest.raises(ValueError, match=f"{re.escape(str(run / RUN_FILE))} is not valid JSON"):
        read_run_record(run)
    with pytest.raises(FileNotFoundError, match="not an isaerft run directory"):
        read_run_record(tmp_path)
