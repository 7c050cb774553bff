"""llama.cpp control vectors: a GGUF file with one ``direction.N`` F32 tensor per layer.

What llama.cpp's loader (``common_control_vector_load_one``) accepts, and so what this
module guarantees before a file is renamed into place:

* every tensor is named ``direction.N`` with an integer ``N >= 1`` (``direction.0`` is
  rejected: block 0's output and the embeddings cannot be steered);
* every tensor is F32 and 1-D, and all have the same length (``n_embd``).

``direction.N`` is added to the output of block ``N`` (see
:func:`isaerft.export.layers.llama_cpp_layer`), i.e. to TransformerLens'
``blocks.N.hook_resid_post``; vectors of several sites that land on the same block are
summed, as llama.cpp itself does for repeated directions. The metadata keys are the ones
``repeng`` and llama.cpp's ``cvector-generator`` write: ``general.architecture =
"controlvector"``, ``controlvector.model_hint`` and ``controlvector.layer_count``.

:func:`control_vector_data` lays a file out as the flat buffer llama.cpp's C API
``llama_set_adapter_cvec`` takes (what ``common_control_vector_load`` builds for
``llama-cli --control-vector``), for bindings such as ``llama-cpp-python`` whose high-level API
does not load control-vector files. ``python -m benchmarks.interop_llama_cpp`` (``make interop``)
checks the whole path against llama.cpp itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from isaerft._io import atomic_write
from isaerft.export.layers import llama_cpp_layer
from isaerft.export.vectors import SteeringVectors

ARCHITECTURE = "controlvector"
_DIRECTION = re.compile(r"^direction\.(\d+)$")


def control_vector_directions(vectors: SteeringVectors) -> dict[int, torch.Tensor]:
    """``{N: vector}`` for ``direction.N``, summed per block and sorted by ``N``.

    Raises:
        ValueError: for a site llama.cpp cannot take (see :func:`llama_cpp_layer`) or a
            vector whose length is not the model's ``d_model``.
    """
    directions: dict[int, torch.Tensor] = {}
    for site in vectors.sites:
        layer = llama_cpp_layer(site.hook_name, vectors.n_layers)
        if site.vector.numel() != vectors.d_model:
            raise ValueError(
                f"the vector at {site.hook_name!r} has {site.vector.numel()} entries, not "
                f"d_model={vectors.d_model}; llama.cpp needs equal-length residual vectors"
            )
        previous = directions.get(layer)
        directions[layer] = site.vector if previous is None else previous + site.vector
    return dict(sorted(directions.items()))


def save_gguf(vectors: SteeringVectors, path: str | Path, *, model_hint: str | None = None) -> Path:
    """Write ``vectors`` as a llama.cpp control vector; nothing is written if any site is refused.

    Use it with ``llama-cli -m MODEL.gguf --control-vector-scaled PATH:SCALE`` (older builds:
    ``--control-vector-scaled PATH SCALE``); ``SCALE = 1`` reproduces the export.

    Args:
        vectors: the export; every site must be a residual-stream hook after block 0.
        path: the ``.gguf`` file to write.
        model_hint: ``controlvector.model_hint``; defaults to the model name. llama.cpp
            does not check it, it only tells people which model the file is for.
    """
    import gguf

    directions = control_vector_directions(vectors)
    hint = model_hint if model_hint is not None else vectors.model_name

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(str(tmp), ARCHITECTURE)
        writer.add_string(f"{ARCHITECTURE}.model_hint", hint)
        writer.add_uint32(f"{ARCHITECTURE}.layer_count", len(directions))
        writer.add_string("isaerft.hook_names", ",".join(vectors.hook_names))
        writer.add_string("isaerft.source_run", vectors.source_run)
        for layer, vector in directions.items():
            writer.add_tensor(f"direction.{layer}", vector.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        read_control_vector(tmp)  # the file must pass llama.cpp's checks before it is renamed in

    return atomic_write(path, write)


def read_control_vector(path: str | Path) -> dict[int, torch.Tensor]:
    """Read a control-vector GGUF into ``{N: vector}``, applying llama.cpp's loader checks.

    Raises:
        ValueError: where llama.cpp would reject the file (bad name, ``direction.0``,
            non-F32, not 1-D, unequal lengths, no tensors).
    """
    import gguf

    reader = gguf.GGUFReader(str(path))
    out: dict[int, torch.Tensor] = {}
    n_embd = None
    for tensor in reader.tensors:
        match = _DIRECTION.match(tensor.name)
        if match is None:
            raise ValueError(f"{path}: tensor {tensor.name!r} is not named direction.N")
        layer = int(match.group(1))
        if layer == 0:
            raise ValueError(f"{path}: llama.cpp rejects direction.0")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(
                f"{path}: {tensor.name} is {tensor.tensor_type.name}, llama.cpp needs F32"
            )
        if len(tensor.shape) != 1:
            raise ValueError(
                f"{path}: {tensor.name} has shape {list(tensor.shape)}, llama.cpp needs 1-D"
            )
        if n_embd is not None and int(tensor.n_elements) != n_embd:
            raise ValueError(
                f"{path}: {tensor.name} has {tensor.n_elements} entries, others {n_embd}"
            )
        n_embd = int(tensor.n_elements)
        out[layer] = torch.from_numpy(np.array(tensor.data, dtype=np.float32)).flatten()
    if not out:
        raise ValueError(f"{path} has no direction tensors")
    del reader  # release the memory map before the caller renames or deletes the file
    return dict(sorted(out.items()))


def control_vector_data(path: str | Path, strength: float = 1.0) -> tuple[np.ndarray, int]:
    """``(data, n_embd)`` for ``llama_set_adapter_cvec(ctx, data, len(data), n_embd, 1, n_layer)``.

    The layout of llama.cpp's ``common_control_vector_load_one``: ``direction.N``, times
    ``strength``, at offset ``n_embd * (N - 1)`` ("layer 1 at [0]"), zeros for the blocks the
    file has no direction for, and ``len(data) = n_embd * max(N)``. ``il_start = 1`` and
    ``il_end = n_layer`` are llama.cpp's defaults (``common_init_from_params``).

    Raises:
        ValueError: where llama.cpp would reject the file (see :func:`read_control_vector`).
    """
    directions = read_control_vector(path)
    n_embd = next(iter(directions.values())).numel()
    data = np.zeros(n_embd * max(directions), dtype=np.float32)
    for layer, vector in directions.items():
        data[n_embd * (layer - 1) : n_embd * layer] += vector.numpy() * np.float32(strength)
    return data, n_embd
