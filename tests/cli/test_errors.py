"""Which failures are the user's (one line, exit 2) and which are bugs (traceback)."""

from __future__ import annotations

from isaerft.cli.errors import user_message


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
