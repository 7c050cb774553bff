"""``--bridge`` on the commands that take ``--model``: it loads that model as a
TransformerBridge (here stopped at the download, offline), and means nothing without it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.cli import main

HUB_MODEL = "google/gemma-3-1b-pt"
BRIDGE_OFFLINE = rf"model '{HUB_MODEL}' must be downloaded.*HF_HUB_OFFLINE=1"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_bridge_without_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "v.gguf")
    assert main(["export", str(tmp_path), "--bridge", "--format", "gguf", "--out", out]) == 2
    assert "--bridge applies to --model" in capsys.readouterr().err
    assert main(["audit", str(tmp_path), "--bridge", "--out", str(tmp_path / "audit")]) == 2
    assert "--bridge applies to --model" in capsys.readouterr().err


def _offline_line(code: int, capsys: pytest.CaptureFixture) -> None:
    """The bridge loader was reached: it refused the hub download in one line, exit 2."""
    err = capsys.readouterr().err
    assert code == 2 and re.search(BRIDGE_OFFLINE, err) and "Traceback" not in err


def test_export_and_generate_load_the_model_as_a_bridge(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture
) -> None:
    sae = tiny_sae(hook_name="blocks.1.hook_resid_post")
    ISaeRFTModel(tiny_model(), sae, ISaeRFTConfig(component="bias")).save_pretrained(tmp_path / "i")
    sae.save_model(str(tmp_path / "sae"))
    specs = [str(tmp_path / "i"), "--bridge", "--model", HUB_MODEL, "--sae", str(tmp_path / "sae")]
    _offline_line(
        main(["export", *specs, "--format", "gguf", "--out", str(tmp_path / "v.gguf")]), capsys
    )
    _offline_line(main(["generate", *specs, "--prompt", "hello"]), capsys)


def test_audit_commands_load_the_model_as_a_bridge(
    tmp_path: Path, offline: None, capsys: pytest.CaptureFixture
) -> None:
    code = main(["audit", str(tmp_path / "run"), "--model", HUB_MODEL, "--sae", "s", "--bridge",
                 "--out", str(tmp_path / "a")])  # fmt: skip
    _offline_line(code, capsys)
    rows = "".join(json.dumps({"prompt": "a", "completion": "b"}) + "\n" for _ in range(4))
    for name in ("suspect.jsonl", "trusted.jsonl"):
        (tmp_path / name).write_text(rows, encoding="utf-8")
    argv = ["audit-dataset", str(tmp_path / "suspect.jsonl"), "--reference",
            str(tmp_path / "trusted.jsonl"), "--model", HUB_MODEL, "--sae", "s",
            "--out", str(tmp_path / "b")]  # fmt: skip
    _offline_line(main([*argv, "--bridge"]), capsys)
    # Without --bridge, audit-dataset follows the recipe's model_backend.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_backend: bridge\ntrainer: {max_steps: 2}\n", encoding="utf-8")
    _offline_line(main([*argv, "--recipe", str(recipe)]), capsys)
