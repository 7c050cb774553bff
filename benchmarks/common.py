"""What every benchmark result records: the machine, the versions, and a JSON writer."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from isaerft import __version__
from isaerft._io import write_json

RESULTS = Path(__file__).parent / "results"
"""Where results are written (and where ``benchmarks.docs`` reads them)."""


@torch.no_grad()
def greedy_continuations(
    forward: Callable[[torch.Tensor], torch.Tensor],
    prompts: Sequence[Sequence[int]],
    stop: set[int],
    max_new: int,
    device: str | torch.device = "cpu",
) -> list[list[int]]:
    """Greedy continuations of token-id ``prompts`` (no KV cache), each up to and including its
    first ``stop`` token, every prompt in one right-padded batch.

    Each row reads its next token at its own last position; what lies to its right (padding,
    other rows' longer prompts) is never attended to by a causal model, so a row's answer is the
    one it would get alone. One batch instead of one per prompt length: on real text nearly every
    prompt has its own length (23 lengths in 32 Tiny Shakespeare prompts)."""
    if not prompts:
        return []
    lengths = torch.tensor([len(p) for p in prompts])
    pad = min(stop)
    tokens = torch.full((len(prompts), int(lengths.max()) + max_new), pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(list(p))
    stops, rows = torch.tensor(sorted(stop)), torch.arange(len(prompts))
    ends = lengths.clone()  # where each row writes its next token
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new):
        out = forward(tokens[:, : int(ends.max())].to(device))
        nxt = out[rows.to(out.device), (ends - 1).to(out.device)].argmax(-1).cpu()
        live = ~done
        tokens[rows[live], ends[live]] = nxt[live]
        ends += live.long()
        done |= torch.isin(nxt, stops)
        if bool(done.all()):
            break
    return [tokens[i, len(p) : int(ends[i])].tolist() for i, p in enumerate(prompts)]


def _cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or ``platform.machine()`` elsewhere."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine, the software versions and the thread count a result was measured with."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        # the organism's build depends on the processor's float kernels (docs/quickstart.md)
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "isaerft_version": __version__,
        "device": device,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):  # not on every platform; a busy machine makes timings noisy
        info["load_average_1m"] = os.getloadavg()[0]
    if device.startswith("cuda") and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    return info


def finite(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return finite(obj.tolist())
    return obj


def write_result(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a result as strict JSON, atomically."""
    return write_json(path, finite(result))
