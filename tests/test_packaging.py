"""The wheel works outside the repository: shipped recipes are package data, the CLI runs.

Builds the wheel from a copy of the sources (nothing is written into the checkout), installs
it into a fresh venv in a temporary folder, reusing this environment's installed dependencies
(no network), and runs ``isaerft demo --help`` and two steps of ``isaerft train
organism-poison`` on the tiny organism from outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_the_wheel_ships_recipes_and_trains_outside_the_checkout(
    tiny_organism: object, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "isaerft", source / "isaerft", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
          str(source)], cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("isaerft-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=tmp_path)  # fmt: skip
    # The dependencies come from this environment: a plain path line (its .pth files, such as
    # the editable install of this checkout, are not processed, so isaerft is the wheel's).
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=tmp_path,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")

    where = _run([str(python), "-c", "import isaerft; print(isaerft.__file__)"], cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv))
    cli = str(venv / "bin" / "isaerft")
    assert "organism" in _run([cli, "demo", "--help"], cwd=tmp_path).stdout
    run_dir = tmp_path / "run"
    _run(
        [cli, "train", "organism-poison", "model=organism:tiny", "sae=organism:tiny",
         "data.organism_dataset.n=64", "trainer.max_steps=2", "trainer.prefix_cache=false",
         "trainer.top_latents_every_n_steps=0", "--quiet", "--output-dir", str(run_dir)],
        cwd=tmp_path,
    )  # fmt: skip
    assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["steps"] == 2


def test_interop_extra_pins_the_llama_cpp_python_make_interop_builds() -> None:
    import re

    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    pinned = re.search(r"^LLAMA_CPP_PYTHON := (\S+)$", makefile, re.MULTILINE)
    interop = re.search(r"^interop = \[(.*)\]$", pyproject, re.MULTILINE)
    dev = re.search(r"^dev = \[(.*)\]$", pyproject, re.MULTILINE)
    assert pinned is not None and interop is not None and dev is not None
    assert f'"llama-cpp-python=={pinned.group(1)}"' in interop.group(1)
    assert "interop" not in dev.group(1) and "llama" not in dev.group(1)
