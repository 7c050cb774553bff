"""The run folder: its layout, its record, and when isaerft may write one.

A run folder (written by :func:`isaerft.training.train`) holds::

    .isaerft-run       marks the folder as an isaerft run; locked while a training writes it
    config.yaml        the resolved recipe
    run.json           what load_run needs: model/SAE specs (and organism builds), data, seed,
                       labels, run id
    intervention/      the trained components (ISaeRFTModel.save_pretrained format)
    metrics.csv        losses per logged step (all attempts of a resumed run merged)
    summary.json       final losses, steps, ...; written last: a run without it is unfinished
    top_latents.jsonl  the periodic top-moved-latents log (if enabled)
    logs/              per-attempt CSV logs
    checkpoints/       resumable Lightning checkpoints (trainable tensors only)
    data/              generated organism datasets

``summary.json`` records the run id of ``run.json`` and the sha256 of the intervention's
weights, so :func:`check_finished` can tell a run's own results from leftovers of another.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from isaerft._io import file_lock, read_json, read_versioned_json, sha256_file
from isaerft.artifact import CONFIG_FILE, WEIGHTS_FILE

RUN_MARKER = ".isaerft-run"
RUN_FILE = "run.json"
START_RECORD = "start_from"
"""``run.json`` key of a differential run: ``{"path", "weights_sha256"}`` of its start."""
RECIPE_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
INTERVENTION_DIR = "intervention"
METRICS_FILE = "metrics.csv"
TOP_LATENTS_FILE = "top_latents.jsonl"
LOGS_DIR = "logs"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINTS_DIR}/last.ckpt"
DATA_DIR = "data"
RESULTS = (
    INTERVENTION_DIR,
    SUMMARY_FILE,
    METRICS_FILE,
    TOP_LATENTS_FILE,
    LOGS_DIR,
    CHECKPOINTS_DIR,
)
"""What a training writes as its result: removed before a fresh (not resumed) training."""

RUN_FORMAT = "isaerft.run"
RUN_FORMAT_VERSION = 1
RUN_ID = "run_id"
"""run.json and summary.json key: a random id per training, kept across its resumes."""
WEIGHTS_HASH = "intervention_sha256"
"""summary.json key: the sha256 of ``intervention/isaerft_weights.safetensors``."""
ORGANISMS = "organisms"
"""run.json key: ``{size: cache key}`` of the organism builds (``organism:<size>`` specs) the
run was trained on; a run reloads on exactly those builds, never on a rebuilt organism."""


class RunFolderError(ValueError):
    """A folder isaerft may not write as a run, or a run that is not what it claims to be."""


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is recognisably an isaerft run folder (marker, or an isaerft run.json)."""
    path = Path(path)
    if (path / RUN_MARKER).is_file():
        return True
    try:
        return bool(read_json(path / RUN_FILE).get("format") == RUN_FORMAT)
    except (OSError, ValueError, AttributeError):
        return False


def check_run_dir(path: str | Path) -> list[str]:
    """Raise :class:`RunFolderError` unless ``path`` may be written as a run.

    Allowed: a new folder, an empty one, or an isaerft run folder. Anything else may hold a
    user's files, which isaerft never deletes or mixes with a run.

    Returns:
        The results of an earlier training in ``path`` (names in :data:`RESULTS`), which a
        fresh training replaces.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, not a folder; pick another output_dir")
    if not path.exists() or not any(path.iterdir()):
        return []
    if not is_run_dir(path):
        raise RunFolderError(
            f"{path} is not empty and is not an isaerft run folder (no {RUN_FILE}); isaerft "
            "writes runs only into new or empty folders or earlier runs: pick another output_dir"
        )
    return [name for name in RESULTS if (path / name).exists()]


class RunClaim:
    """What claiming a run folder created, so that a failed start can take exactly that back.

    A training *starts* when it writes ``run.json`` (:meth:`commit`); until then it may fail
    on its input (bad data, a model that does not load, ...), and :meth:`undo` then removes
    what this attempt added: the folder and parents it created, the marker, and any entry
    isaerft writes that was not there before. A user's files are never touched, and a folder
    that existed (empty, or an earlier run) is left as it was found.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaced: list[str] = []
        self.committed = False
        self.created: list[Path] = []  # folders this claim created, outermost first
        missing = path.absolute()
        while not missing.exists():
            self.created.insert(0, missing)
            missing = missing.parent
        self.existing: set[str] = {p.name for p in path.iterdir()} if path.is_dir() else set()

    def commit(self) -> None:
        """The training has started (its ``run.json`` is written): keep the folder from now on,
        whatever happens, as an (unfinished) run that the next training resumes."""
        self.committed = True

    def undo(self) -> None:
        """Remove what this attempt added (only names isaerft writes), unless committed.

        A ``run.json`` that appeared since the claim means a training (under its own, inner
        claim) has started in the folder: it is a run now, and is kept as one."""
        started = RUN_FILE not in self.existing and (self.path / RUN_FILE).is_file()
        if self.committed or started:
            return
        if self.path.is_dir():
            for name in (RUN_MARKER, RECIPE_FILE, RUN_FILE, DATA_DIR, *RESULTS):
                target = self.path / name
                if name in self.existing or not (target.exists() or target.is_symlink()):
                    continue
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only if empty: anything else there is not ours to delete
            except OSError:
                break


def _claim(path: Path) -> RunClaim:
    claim = RunClaim(path)
    claim.replaced = check_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / RUN_MARKER).touch()
    except OSError as err:
        claim.undo()
        raise RunFolderError(
            f"cannot write to {path} ({err.strerror}); pick a writable output_dir"
        ) from err
    return claim


def claim_run_dir(path: str | Path) -> RunClaim:
    """:func:`check_run_dir`, then create ``path`` and mark it as a run folder.

    Call it before writing anything else into the folder (e.g. generated data), so a run
    killed before ``run.json`` exists is still recognised as a run. The returned claim's
    ``replaced`` is what :func:`check_run_dir` returned; call its :meth:`RunClaim.undo` if
    the start fails before a training commits the folder.
    """
    return _claim(Path(path))


@contextlib.contextmanager
def locked_run_dir(path: str | Path) -> Iterator[RunClaim]:
    """Claim ``path`` (:func:`claim_run_dir`) and hold its lock for the ``with`` block.

    A second training into the same folder meanwhile gets :class:`RunFolderError` at once.
    The lock dies with its process, so a killed training never blocks the next one. If the
    block raises before the claim is committed (:meth:`RunClaim.commit`: the training wrote
    ``run.json``), the claim is undone (:meth:`RunClaim.undo`): a failed start leaves the
    folder as it was found.
    """
    path = Path(path)
    claim = _claim(path)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path / RUN_MARKER, wait=False))
        except BlockingIOError as err:
            raise RunFolderError(
                f"another isaerft training is writing {path} right now; wait for it to finish "
                "or pick another output_dir"
            ) from err
        try:
            yield claim
        except BaseException:
            claim.undo()  # still under the lock: no other training is in the folder
            raise


def remove_results(path: str | Path) -> list[str]:
    """Delete the results of an earlier training in the run folder ``path`` (only the names in
    :data:`RESULTS`, which isaerft wrote); returns the names removed."""
    path = Path(path)
    if not is_run_dir(path):
        raise RunFolderError(f"{path} is not an isaerft run folder; not deleting anything in it")
    removed = []
    for name in RESULTS:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        else:
            continue
        removed.append(name)
    return removed


def new_run_id() -> str:
    return secrets.token_hex(8)


def read_run_record(path: str | Path) -> dict[str, Any]:
    """``run.json`` of the run folder ``path``, checked for format and version."""
    path = Path(path)
    record_path = path / RUN_FILE
    if not record_path.is_file():
        raise FileNotFoundError(
            f"{record_path} not found; {path} is not an isaerft run directory "
            "(point at the folder isaerft train wrote)"
        )
    return read_versioned_json(
        record_path,
        kind=RUN_FORMAT,
        version=RUN_FORMAT_VERSION,
        what="an isaerft run record",
        fix="train the run again",
    )


def read_summary(path: str | Path) -> dict[str, Any] | None:
    """``summary.json`` of the run folder ``path``, or ``None`` while the run is unfinished."""
    summary_path = Path(path) / SUMMARY_FILE
    return _read_object(summary_path) if summary_path.is_file() else None


def check_finished(path: str | Path, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of the run folder ``path``; :class:`RunFolderError` unless the run finished
    and its ``intervention/`` is the one this training saved (not a leftover of another)."""
    path = Path(path)
    record = record if record is not None else read_run_record(path)
    summary = read_summary(path)
    if summary is None:
        raise RunFolderError(
            f"{path} is an unfinished run (no {SUMMARY_FILE}): it was interrupted or is still "
            "training; resume it by training the same recipe into it again"
        )
    # Runs from before run ids and hashes were recorded are taken as they are.
    if record.get(RUN_ID) is not None and summary.get(RUN_ID) != record[RUN_ID]:
        raise RunFolderError(
            f"{path / SUMMARY_FILE} belongs to another training than {path / RUN_FILE}: the "
            "folder mixes two runs; train it again"
        )
    weights = path / INTERVENTION_DIR / WEIGHTS_FILE
    expected = summary.get(WEIGHTS_HASH)
    if expected is not None and (not weights.is_file() or sha256_file(weights) != expected):
        raise RunFolderError(
            f"{path / INTERVENTION_DIR} is not the intervention this run saved (missing, or "
            f"its weights' sha256 differs from {SUMMARY_FILE}'s); train it again"
        )
    return summary


def intervention_of(path: str | Path) -> Path:
    """The saved intervention of ``path``: ``path/intervention`` of a finished run folder
    (checked with :func:`check_finished`), or ``path`` itself if it is a bare intervention."""
    path = Path(path)
    if (path / RUN_FILE).is_file():
        check_finished(path)
        return path / INTERVENTION_DIR
    for candidate in (path, path / INTERVENTION_DIR):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"run {path} not found; pass a run directory isaerft train wrote")
    raise FileNotFoundError(
        f"{path} is neither a run directory ({RUN_FILE} + {INTERVENTION_DIR}/) nor a saved "
        f"intervention ({CONFIG_FILE}); pass the directory isaerft train wrote"
    )


def _read_object(path: Path) -> dict[str, Any]:
    try:
        record = read_json(path)
    except ValueError as err:  # bad JSON or bad UTF-8: truncated or not ours
        raise ValueError(f"{path} is not valid JSON ({err}); train the run again") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds no JSON object; train the run again")
    return record
