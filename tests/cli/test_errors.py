"""Which failures are the user's (one line, exit 2) and which are bugs (traceback)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import isaerft
from isaerft.cli.errors import one_line_warnings, user_message


def test_hub_failures_wrapped_in_oserror_are_one_line_with_a_fix() -> None:
    err = OSError(
        "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
        "them in the cached files.\nCheck your internet connection."
    )
    message = user_message(err)
    assert message is not None and "\n" not in message
    assert "HF_HUB_OFFLINE" in message


def test_an_unexplained_oserror_stays_a_bug() -> None:
    assert user_message(OSError("device hiccup")) is None


def test_isaerft_warnings_print_as_one_line_and_others_as_usual(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    passed_on: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda m, c, f, n, *rest: passed_on.append(f))
    ours = str(Path(isaerft.__file__).parent / "training" / "run.py")
    with one_line_warnings():
        warnings.simplefilter("always")
        warnings.warn_explicit("a run folder\nheld an earlier run", UserWarning, ours, 7)
        warnings.warn_explicit("deprecated thing", DeprecationWarning, "/elsewhere/lib.py", 3)
    assert capsys.readouterr().err.splitlines() == [
        "isaerft: warning: a run folder held an earlier run"
    ]
    assert passed_on == ["/elsewhere/lib.py"]
