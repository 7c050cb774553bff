"""An independent, byte-level GGUF reader for tests (``struct`` only, no ``gguf`` package)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# GGUF value types (ggml's gguf.h): scalar struct codes; 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
GGML_TYPE_F32 = 0


class _Bytes:
    """A little-endian cursor over a file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> object:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = int(self.take("Q"))
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8")

    def value(self, vtype: int) -> object:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            inner, n = int(self.take("I")), int(self.take("Q"))
            return [self.value(inner) for _ in range(n)]
        raise AssertionError(f"unknown GGUF value type {vtype}")


def parse_gguf(
    path: Path,
) -> tuple[int, dict[str, object], dict[str, tuple[list[int], int, np.ndarray]]]:
    """(version, metadata, {name: (dims, ggml type, values)}) read with ``struct`` only."""
    buf = _Bytes(path.read_bytes())
    assert buf.data[:4] == b"GGUF", "bad magic"
    buf.pos = 4
    version = int(buf.take("I"))
    n_tensors, n_kv = int(buf.take("Q")), int(buf.take("Q"))
    meta = {}
    for _ in range(n_kv):
        key = buf.string()
        meta[key] = buf.value(int(buf.take("I")))
    infos = []
    for _ in range(n_tensors):
        name = buf.string()
        dims = [int(buf.take("Q")) for _ in range(int(buf.take("I")))]
        infos.append((name, dims, int(buf.take("I")), int(buf.take("Q"))))
    align = int(meta.get("general.alignment", 32))  # type: ignore[arg-type]
    start = (buf.pos + align - 1) // align * align
    tensors = {}
    for name, dims, ggml_type, offset in infos:
        count = int(np.prod(dims))
        values = np.frombuffer(buf.data, dtype="<f4", count=count, offset=start + offset)
        tensors[name] = (dims, ggml_type, values.copy())
    return version, meta, tensors
