"""One mechanism for failures a user can cause: a single line on stderr and exit code 2.

Commands raise ordinary exceptions; :func:`user_message` decides which of them a user caused
(a bad value, file or folder) and turns each into one line naming the problem. Anything else
is a bug and keeps its traceback. Output paths are checked with :func:`check_output_file`
and :func:`check_output_dir` *before* anything heavy is loaded, and the checks write nothing.
isaerft's own warnings print as one line each (:func:`one_line_warnings`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

USER_ERROR_EXIT = 2
_HUB_WORDS = ("huggingface", "hf_hub_offline", "offline mode", "couldn't connect", "hub")


def user_message(err: BaseException) -> str | None:
    """One line describing a user-caused failure, or ``None`` for a bug (keep the traceback)."""
    if isinstance(err, pickle.UnpicklingError):
        return (
            "a checkpoint holds objects other than tensors and was refused (loading it could "
            f"run code): {_first_line(str(err))}; delete the run's checkpoints/ to start over"
        )
    if isinstance(err, OSError) and (err.filename is not None or err.args):
        if err.filename is not None and err.strerror:
            return f"{err.filename}: {err.strerror}; check the path and its permissions"
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            return _one_line(str(err))
        if any(word in str(err).lower() for word in _HUB_WORDS):
            # transformers / huggingface_hub wrap "no such model" and "no network" in OSError
            if "HF_HUB_OFFLINE" in str(err):  # isaerft's own message already says the fix
                return _one_line(str(err))
            return _one_line(
                f"{err}; check the model or SAE name, your network, or unset HF_HUB_OFFLINE"
            )
        return None
    if isinstance(err, ValueError):
        return _one_line(str(err))
    if type(err).__name__ == "MisconfigurationException":  # Lightning's settings errors
        return _one_line(f"{err}; fix the recipe's trainer section")
    return None


def report(err: BaseException) -> int | None:
    """Print ``err`` as one line and return the exit code, or ``None`` if it is a bug."""
    message = user_message(err)
    if message is None:
        return None
    print(f"isaerft: error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, a warning raised from isaerft's code prints as ``isaerft: warning:
    <message>`` on one line (Python's default adds the file, line number and source line of
    the call, which say nothing to a user); other packages' warnings print as usual."""
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if _is_isaerft_file(filename):
            print(f"isaerft: warning: {_one_line(str(message))}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _is_isaerft_file(filename: str) -> bool:
    package = Path(__file__).resolve().parents[1]
    with contextlib.suppress(ValueError, OSError):
        return Path(filename).resolve().is_relative_to(package)
    return False


def check_output_file(path: str | Path, flag: str) -> Path:
    """Refuse an output file that is a folder, sits under a file, or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name inside it")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} is not writable; choose another path")
    _check_parent(path, flag)
    return path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Refuse an output folder that is a file, sits under a file, or cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; choose another path")
    if path.is_dir():
        _probe(path, flag, path)
    else:
        _check_parent(path, flag)
    return path


def _check_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor must be a writable folder."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, not a folder; choose another path")
    _probe(ancestor, flag, path)


def _probe(folder: Path, flag: str, path: Path) -> None:
    # os.access says yes to root on a read-only mount: try a real (removed) temporary file.
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".isaerft-write-check.")
    except OSError as err:
        raise ValueError(
            f"{flag} {path}: cannot write in {folder} ({err.strerror}); choose a writable folder"
        ) from None
    os.close(fd)
    os.unlink(tmp)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
