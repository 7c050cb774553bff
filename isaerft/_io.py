"""Atomic, pickle-free file writes, folder swaps, locks and content hashes shared by every
artifact the library saves."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

# Read once at import: os.umask can only be read by setting it, which is not thread-safe later.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 - umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return write_text(path, text)


def write_text(path: str | Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a truncated, malformed or non-UTF-8 file is an error naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not readable JSON ({err}); it may be truncated or edited: restore or "
            "re-create it"
        ) from None


def check_format(
    record: Any,
    path: str | Path,
    *,
    kind: str,
    version: int,
    what: str,
    fix: str = "",
    exact: bool = False,
    keys: tuple[str, str] = ("format", "format_version"),
) -> dict[str, Any]:
    """``record`` if it is a dict with ``format == kind`` and ``format_version <= version``
    (``== version`` with ``exact``), else ``ValueError`` naming ``path``, ``what`` it should be
    (e.g. ``"an isaerft run record"``) and ``fix``. ``keys`` renames the two fields."""
    format_key, version_key = keys
    hint = f"; {fix}" if fix else ""
    found = record.get(format_key) if isinstance(record, dict) else type(record).__name__
    if found != kind:
        raise ValueError(f"{path} is not {what} ({format_key} {found!r}, expected {kind!r}){hint}")
    assert isinstance(record, dict)
    try:
        found_version = int(record.get(version_key, 0))
    except (TypeError, ValueError):
        found_version = -1
    if found_version > version:
        raise ValueError(
            f"{path} was written by a newer isaerft ({what} {version_key} {found_version} > "
            f"{version}); upgrade isaerft to read it"
        )
    if found_version < 0 or (exact and found_version != version):
        raise ValueError(
            f"{path} is not {what} this isaerft can read ({version_key} "
            f"{record.get(version_key)!r}, expected {version}){hint}"
        )
    return record


def read_versioned_json(
    path: str | Path,
    *,
    kind: str,
    version: int,
    what: str,
    fix: str = "",
    exact: bool = False,
    keys: tuple[str, str] = ("format", "format_version"),
) -> dict[str, Any]:
    """The JSON object in ``path``, checked by :func:`check_format`; a truncated or malformed
    file is a ``ValueError`` saying ``{path} is not valid JSON`` and ``fix``."""
    try:
        record = read_json(path)
    except ValueError as err:  # bad JSON or bad UTF-8: truncated or not ours
        raise ValueError(f"{path} is not valid JSON ({err}){f'; {fix}' if fix else ''}") from err
    return check_format(
        record, path, kind=kind, version=version, what=what, fix=fix, exact=exact, keys=keys
    )


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSON-lines file, lazily; a line
    that is not JSON is a ``ValueError`` naming the file and the line."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number} is not JSON: {err}") from err


def read_label_records(path: str | Path, fix: str = "") -> list[dict[str, Any]]:
    """The lines of a Neuronpedia-style latent label file (JSONL, one latent per line:
    ``modelId``, ``layer``, ``index``, ``description``, optionally ``score``), each checked
    for an integer ``index`` and a ``description``. An empty file gives ``[]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} not found{f'; {fix}' if fix else ''}")
    records = []
    for number, record in iter_jsonl(path):
        try:
            int(record["index"])
            str(record["description"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path}:{number} is not a label line: it needs 'index' and 'description' "
                "(Neuronpedia explanation export format: modelId, layer, index, description)"
            ) from None
        records.append(record)
    return records


def write_safetensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    # safetensors refuses shared or non-contiguous storage; clone makes each tensor its own.
    owned = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = dict(metadata) if metadata else None
    return atomic_write(path, lambda p: save_file(owned, str(p), metadata=meta))


def read_safetensors(
    path: str | Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error type for corrupt files
        if isinstance(err, OSError):
            raise
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it may be truncated or "
            "corrupt: restore or re-create it"
        ) from None


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in chunks (caches can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a folder, or a file created if missing).

    With ``wait=False`` a lock held by another process raises ``BlockingIOError`` at once.
    POSIX ``flock``: released by the OS when the holder dies, so a killed holder never leaves
    a stale lock. Elsewhere no cross-process lock is taken.
    """
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: no cross-process lock
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)


def new_sibling_dir(target: Path, suffix: str) -> Path:
    """A new empty hidden folder next to ``target`` (``.<name>.<random><suffix>``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent))
    # mkdtemp creates 0700; give the folder the mode a plain mkdir would (0777 - umask).
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def replace_dir(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``: any old ``target`` is renamed aside, then deleted.

    Readers see the old folder or the new one, never a mix. A kill between the two renames
    leaves ``target`` missing and both folders as hidden siblings (``.<name>.*.old``).
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
