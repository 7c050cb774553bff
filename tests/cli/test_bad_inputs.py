"""The CLI over a table of bad inputs: exit code 2, one line on stderr naming the problem, no
traceback, and nothing written. Runs ``isaerft.cli.main`` in-process on a tiny saved model."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from factories import tiny_model, tiny_sae, word_tokenizer

from isaerft.cli import main
from isaerft.cli.export import unescape
from isaerft.loading import save_model

HOOK = "blocks.1.hook_resid_post"
WORDS = ["the", "cat", "is", "nice", "User", ":", "?"]


@dataclass
class Setup:
    root: Path

    def __truediv__(self, name: str) -> Path:
        return self.root / name


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("bad_inputs")
    model = tiny_model()
    model.tokenizer = word_tokenizer(WORDS)
    save_model(model, root / "model")
    tiny_sae(hook_name=HOOK).save_model(str(root / "sae"))
    rows = [{"prompt": "User : the cat ?", "completion": " the cat is nice"}] * 8
    data = _write_jsonl(root / "d.jsonl", rows)
    recipe = {
        "model": str(root / "model"),
        "sae": str(root / "sae"),
        "data": {"path": str(data), "batch_size": 4},
        "trainer": {"max_steps": 1, "checkpoint_every_n_steps": 0, "progress_bar": False},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert (
        main(["train", str(root / "recipe.yaml"), "--quiet", "--output-dir", str(root / "run")])
        == 0
    )

    text = (root / "recipe.yaml").read_text(encoding="utf-8")
    (root / "broken.yaml").write_text(text + "optim: {lr: [1\n", encoding="utf-8")
    (root / "dup.yaml").write_text(text + "model: other\n", encoding="utf-8")
    (root / "latin1.yaml").write_bytes(text.encode() + "name: caf\xe9\n".encode("latin-1"))
    (root / "afile").write_text("not a folder\n", encoding="utf-8")
    (root / "latin1.jsonl").write_bytes(
        '{"prompt": "caf\xe9", "completion": " x"}\n'.encode("latin-1")
    )
    _write_jsonl(root / "null.jsonl", [{"prompt": "the cat", "completion": None}] * 8)

    shutil.copytree(root / "run", root / "run_trunc_json")
    _truncate(root / "run_trunc_json" / "run.json")
    shutil.copytree(root / "run" / "intervention", root / "weights_trunc")
    _truncate(root / "weights_trunc" / "isaerft_weights.safetensors")
    shutil.copytree(root / "run" / "intervention", root / "config_trunc")
    _truncate(root / "config_trunc" / "isaerft_config.json")
    shutil.copytree(root / "model", root / "model_trunc")
    _truncate(root / "model_trunc" / "model.safetensors")
    shutil.copytree(root / "run", root / "run_pickle")
    (root / "run_pickle" / "summary.json").unlink()
    (root / "run_pickle" / "checkpoints").mkdir(exist_ok=True)
    # A checkpoint holding a non-tensor object: loading it with pickle could run code.
    torch.save(
        {"global_step": 1, "x": argparse.Namespace(a=1)},
        root / "run_pickle" / "checkpoints" / "last.ckpt",
    )
    return Setup(root)


def _train(s: Setup, recipe: str, *extra: str, out: str = "new_run") -> list[str]:
    return ["train", str(s / recipe), *extra, "--quiet", "--output-dir", str(s / out)]


def _model(s: Setup, model: str = "model") -> list[str]:
    return ["--model", str(s / model), "--sae", str(s / "sae")]


# (id, argv, what the one line must name, whether a run folder claim may remain)
CASES: list[tuple[str, Callable[[Setup], list[str]], str]] = [
    ("recipe-malformed-yaml", lambda s: _train(s, "broken.yaml"), "broken.yaml is not valid YAML at line"),
    ("recipe-duplicate-key", lambda s: _train(s, "dup.yaml"), "dup.yaml: key 'model' is written twice"),
    ("recipe-not-utf8", lambda s: _train(s, "latin1.yaml"), "latin1.yaml is not UTF-8"),
    ("recipe-missing", lambda s: _train(s, "no-such.yaml"), "no-such.yaml not found; give a path or one of"),
    ("override-malformed", lambda s: _train(s, "recipe.yaml", "optim.lr=[1"), "override 'optim.lr=[1' is not valid YAML"),
    ("override-no-equals", lambda s: _train(s, "recipe.yaml", "optim.lr"), "must look like section.key=value"),
    ("override-unknown-key", lambda s: _train(s, "recipe.yaml", "optim.rate=1"), "unknown key(s) ['rate'] in optim"),
    ("epochs-inf", lambda s: _train(s, "recipe.yaml", "trainer.epochs=.inf"), "trainer.epochs=inf is invalid"),
    ("lr-nan", lambda s: _train(s, "recipe.yaml", "optim.lr=.nan"), "optim.lr=nan is invalid"),
    ("l1-nan", lambda s: _train(s, "recipe.yaml", "intervention.l1_coefficient=.nan"), "l1_coefficient=nan"),
    ("packing-not-bool", lambda s: _train(s, "recipe.yaml", "data.packing=yes please"), "data.packing='yes please'"),
    ("float16-adam", lambda s: _train(s, "recipe.yaml", "intervention.dtype=float16"), "Adam's eps"),
    ("output-under-a-file", lambda s: _train(s, "recipe.yaml", out="afile/run"), "afile is a file, not a folder"),
    ("output-is-a-file", lambda s: _train(s, "recipe.yaml", out="afile"), "afile is a file, not a folder"),
    ("output-read-only", lambda s: ["train", str(s / "recipe.yaml"), "--output-dir", "/sys/isaerft-run"], "cannot write in /sys"),
    ("data-null-completion", lambda s: _train(s, "recipe.yaml", f"data.path={s / 'null.jsonl'}"), "row 0, 'completion'"),
    ("data-not-utf8", lambda s: _train(s, "recipe.yaml", f"data.path={s / 'latin1.jsonl'}"), "latin1.jsonl"),
    ("checkpoint-pickle", lambda s: _train(s, "recipe.yaml", out="run_pickle"), "run_pickle/checkpoints/last.ckpt holds objects"),
    ("export-out-is-folder", lambda s: ["export", str(s / "run"), "--format", "safetensors", "--out", str(s.root)], "is a folder"),
    ("export-out-under-file", lambda s: ["export", str(s / "run"), "--format", "gguf", "--out", str(s / "afile" / "v.gguf")], "afile is a file"),
    ("export-run-json-truncated", lambda s: ["export", str(s / "run_trunc_json"), "--format", "safetensors", "--out", str(s / "v.st")], "run_trunc_json/run.json is not readable JSON"),
    ("export-weights-truncated", lambda s: ["export", str(s / "weights_trunc"), *_model(s), "--format", "safetensors", "--out", str(s / "v.st")], "isaerft_weights.safetensors"),
    ("export-config-truncated", lambda s: ["export", str(s / "config_trunc"), *_model(s), "--format", "safetensors", "--out", str(s / "v.st")], "isaerft_config.json is not readable JSON"),
    ("export-model-truncated", lambda s: ["export", str(s / "run" / "intervention"), *_model(s, "model_trunc"), "--format", "safetensors", "--out", str(s / "v.st")], "model.safetensors is not a readable safetensors file"),
    ("generate-prompt-too-long", lambda s: ["generate", str(s / "run"), "--prompt", " ".join(["the cat"] * 200)], "--prompt is"),
    ("audit-self-reference", lambda s: ["audit", str(s / "run"), "--reference", str(s / "run"), "--out", str(s / "report")], "is the run being audited"),
    ("audit-out-is-a-file", lambda s: ["audit", str(s / "run"), "--out", str(s / "afile")], "afile is a file, not a folder"),
    ("audit-row-tokens-negative", lambda s: ["audit", str(s / "run"), "--row-tokens", "-1", "--out", str(s / "report")], "row_tokens=-1 is invalid"),
    ("organism-dataset-out-is-folder", lambda s: ["organism", "dataset", "--kind", "clean", "--out", str(s.root)], "is a folder"),
]  # fmt: skip


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(("argv", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    setup: Setup,
    argv: Callable[[Setup], list[str]],
    names: str,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    case = request.node.callspec.id
    if case == "output-read-only" and os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("/sys is writable here")
    before = _snapshot(setup.root)
    capsys.readouterr()
    code = main(argv(setup))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isaerft: error: "), err
    assert names in lines[0], lines[0]
    # Also for bad data, found after the run folder was claimed: a failed start is undone.
    assert _snapshot(setup.root) == before


@pytest.mark.parametrize("folder", ["empty", "finished-run"])
def test_bad_data_leaves_the_output_folder_as_it_was(
    setup: Setup, tmp_path: Path, folder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / folder
    if folder == "empty":
        out.mkdir()
    else:
        shutil.copytree(setup / "run", out)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    argv = _train(setup, "recipe.yaml", f"data.path={setup / 'null.jsonl'}", out=str(out))
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "row 0, 'completion'" in lines[0], lines
    assert _snapshot(tmp_path) == before  # no marker, no data/, the earlier run untouched
    if folder == "finished-run":
        from isaerft.training import load_run

        load_run(out)  # still the finished run it was


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_found_before_loading(
    setup: Setup, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(_train(setup, "recipe.yaml", out=str(locked / "run"))) == 2
    finally:
        locked.chmod(0o700)
    assert "cannot write in" in capsys.readouterr().err


def test_accelerator_gpu_on_a_cpu_build(setup: Setup, capsys) -> None:  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        pytest.skip("this build has CUDA")
    assert main(_train(setup, "recipe.yaml", "trainer.accelerator=gpu")) == 2
    err = capsys.readouterr().err
    assert "trainer.accelerator=gpu (or --device cuda) but this torch build sees no CUDA" in err
    assert not (setup / "new_run").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--device", "cuda:1"], "CUDA_VISIBLE_DEVICES=1"),
        (["demo", "--device", "tpu"], "device 'tpu' is not one of cpu, cuda, mps"),
    ],
)
def test_a_device_that_cannot_train_is_one_line(argv: list[str], message: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_debug_shows_the_traceback(setup: Setup) -> None:
    with pytest.raises(ValueError, match="epochs=inf"):
        main(["--debug", *_train(setup, "recipe.yaml", "trainer.epochs=.inf")])


def test_bugs_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, setup: Setup) -> None:
    import isaerft.training

    def broken(recipe: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(isaerft.training, "train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(_train(setup, "recipe.yaml"))


def test_audit_without_references_says_nothing_was_compared(
    setup: Setup, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert main(["audit", str(setup / "run"), "--no-baselines", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "nothing was compared" in out and "flagged latents (unusual edits): 0" not in out


def test_prompt_escapes() -> None:
    assert unescape(r"User: hi\nAssistant:") == "User: hi\nAssistant:"
    assert unescape(r"a\tb\\n") == "a\tb\\n" and unescape("café\\") == "café\\"


@pytest.mark.slow
def test_export_resolves_organism_specs(tiny_organism, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft import ISaeRFTConfig, ISaeRFTModel

    org = tiny_organism
    wrapped = ISaeRFTModel(org.load_model(), org.load_sae(), ISaeRFTConfig(component="bias"))  # type: ignore[attr-defined]
    wrapped.save_pretrained(tmp_path / "iv")
    specs = ["--model", "organism:tiny", "--sae", "organism:tiny"]
    out = tmp_path / "v.safetensors"
    argv = ["export", str(tmp_path / "iv"), *specs, "--format", "safetensors", "--out", str(out)]
    assert main(argv) == 0 and out.is_file()
