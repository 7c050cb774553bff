"""``isaerft train``: recipe + overrides in, a run directory and a short report out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from factories import tiny_model, tiny_sae
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from isaerft.cli import main
from isaerft.loading import save_model


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_train")
    words = ["<pad>", "<bos>", "<eos>", "<unk>", "the", "cat", "is", "nice", "User", ":", "?"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    model = tiny_model()
    model.tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    save_model(model, root / "model")
    tiny_sae(hook_name="blocks.1.hook_resid_post").save_model(str(root / "sae"))
    rows = [{"prompt": "User : the cat ?", "completion": " the cat is nice"}] * 8
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = {
        "model": str(root / "model"),
        "sae": str(root / "sae"),
        "data": {"path": str(root / "d.jsonl"), "batch_size": 4},
        "trainer": {"max_steps": 2, "checkpoint_every_n_steps": 0},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_train_writes_a_run_directory(recipe: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    code = main(["train", str(recipe), "trainer.max_steps=3", "--quiet", "--output-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"run directory: {out}" in printed and "steps: 3" in printed and "wall time" in printed
    for name in ("config.yaml", "run.json", "metrics.csv", "summary.json", "intervention"):
        assert (out / name).exists(), name
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


def test_unknown_key_lists_valid_keys(recipe: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", str(recipe), "trainer.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['max_stepz'] in trainer; valid keys:" in err and "'max_steps'" in err


def test_missing_recipe(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", "no-such-recipe"]) == 2
    assert "recipe no-such-recipe not found" in capsys.readouterr().err


def test_a_loss_blow_up_is_one_warning_line(recipe: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    # Adam with lr=1e3 under an L1 penalty: the total loss ends far above where it started.
    lr = ["optim.lr=1e3", "intervention.l1_coefficient=1e-3"]
    argv = ["train", str(recipe), *lr, "trainer.max_steps=6", "--quiet"]
    assert main([*argv, "--output-dir", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "loss rose" in line]
    assert len(err) == 1 and err[0].startswith("isaerft: warning: the training loss rose"), err
    assert "lower optim.lr (now 1000)" in err[0]
    assert json.loads((out / "summary.json").read_text())["warnings"] == [
        err[0].removeprefix("isaerft: warning: ")
    ]


def test_retraining_into_a_run_folder_warns_in_one_line(
    recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(recipe), "--quiet", "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 0 and main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    said = [line for line in err if "held an earlier run" in line]
    assert len(said) == 1 and said[0].startswith("isaerft: warning: "), err
    assert not any("UserWarning" in line or "train(" in line for line in err), err


def test_the_thread_count_is_printed_first(  # type: ignore[no-untyped-def]
    recipe: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISAERFT_THREADS", raising=False)
    argv = ["train", str(recipe), "trainer.threads=2", "--quiet"]
    assert main([*argv, "--output-dir", str(tmp_path / "a")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first == "isaerft: using 2 torch threads (trainer.threads=2; ISAERFT_THREADS overrides it)"
    )
    monkeypatch.setenv("ISAERFT_THREADS", "1")
    assert main([*argv, "--output-dir", str(tmp_path / "b")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "isaerft: using 1 torch thread (ISAERFT_THREADS=1, over trainer.threads=2)"
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["torch_threads"] == 1


def test_bad_thread_settings_are_one_line(  # type: ignore[no-untyped-def]
    recipe: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISAERFT_THREADS", raising=False)
    assert main(["train", str(recipe), "trainer.threads=0", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "recipe trainer.threads=0 is invalid: must be an integer >= 1" in err
    assert "\n" not in err
    monkeypatch.setenv("ISAERFT_THREADS", "many")
    assert main(["train", str(recipe), "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "ISAERFT_THREADS='many' is invalid" in err and "\n" not in err
    assert not (tmp_path / "r").exists()
