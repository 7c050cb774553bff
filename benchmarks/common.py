"""What every benchmark result records: the machine, the versions, and a JSON writer."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from isaerft import __version__
from isaerft._io import write_json

RESULTS = Path(__file__).parent / "results"
"""Where results are written (and where ``benchmarks.docs`` reads them)."""


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
