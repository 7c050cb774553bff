"""The kept association null: a key of exactly what it is computed from, kept in memory and in
an optional folder, whose files are used only when they read back as that key's null and are
never replaced."""

from __future__ import annotations

import json

import pytest
import torch

from isaerft.audit import nullcache
from isaerft.audit.nullcache import MEMORY_ENTRIES, NullCache, null_key


@pytest.fixture(autouse=True)
def _empty_memory():
    nullcache.forget()
    yield
    nullcache.forget()


def matrices(flip: tuple[int, int] | None = None) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    prompt = (torch.rand(50, 8, generator=gen) < 0.2).float()
    completion = (torch.rand(50, 6, generator=gen) < 0.2).float()
    if flip is not None:
        prompt[flip] = 1 - prompt[flip]
    return [("h", prompt, completion)]


def test_the_key_follows_every_input() -> None:
    base = null_key(matrices(), size=20, draws=10)
    assert null_key(matrices(), size=20, draws=10) == base
    assert null_key(matrices(flip=(3, 2)), size=20, draws=10) != base
    assert null_key(matrices(), size=21, draws=10) != base
    assert null_key(matrices(), size=20, draws=11) != base
    ((hook, p, c),) = matrices()
    assert null_key([("other", p, c)], size=20, draws=10) != base
    assert null_key([(hook, p[:, :7], c)], size=20, draws=10) != base


def test_a_null_kept_in_a_folder_is_read_back(tmp_path) -> None:
    cache = NullCache(tmp_path)
    calls = []
    values = cache.null("k" * 64, 3, lambda: calls.append(1) or [1.5, 0.0, 2.25])
    assert values == [1.5, 0.0, 2.25]
    path = cache.path("k" * 64)
    assert path is not None and json.loads(path.read_text())["null"] == values
    nullcache.forget()  # as a new process would start
    assert cache.null("k" * 64, 3, lambda: calls.append(1) or [9.0] * 3) == values
    assert len(calls) == 1


def kept(**changes: object) -> str:
    """A kept null's file content for key ``"k" * 64`` and 3 draws, with ``changes``."""
    entry = {"format": "isaerft-association-null", "version": 1, "key": "k" * 64}
    return json.dumps({**entry, "null": [1.0, 1.0, 1.0], **changes})


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        kept(key="x"),
        kept(null=[1.0, 2.0]),
        kept(null=[1.0, True, 2.0]),
        kept(format="other"),
        kept(version=2),
        kept(null=[1.0, float("nan"), 2.0]),
    ],
    ids=["unreadable", "other-key", "short", "bool", "other-format", "other-version", "nan"],
)
def test_a_file_that_is_not_the_keys_null_is_not_used_nor_replaced(tmp_path, content) -> None:
    cache = NullCache(tmp_path)
    path = cache.path("k" * 64)
    assert path is not None
    path.write_text(content)
    assert cache.get("k" * 64, 3) is None
    assert cache.null("k" * 64, 3, lambda: [4.0, 5.0, 6.0]) == [4.0, 5.0, 6.0]
    assert path.read_text() == content


def test_a_null_found_in_memory_also_goes_to_the_folder(tmp_path) -> None:
    NullCache().put("k" * 64, [1.0, 2.0, 3.0])
    cache = NullCache(tmp_path)
    assert cache.null("k" * 64, 3, lambda: [9.0, 9.0, 9.0]) == [1.0, 2.0, 3.0]
    path = cache.path("k" * 64)
    assert path is not None and json.loads(path.read_text())["null"] == [1.0, 2.0, 3.0]


def test_memory_keeps_the_latest_nulls() -> None:
    cache = NullCache()
    for i in range(MEMORY_ENTRIES + 1):
        cache.put(f"{i}", [float(i)])
    assert cache.get("0", 1) is None
    assert cache.get(f"{MEMORY_ENTRIES}", 1) == [float(MEMORY_ENTRIES)]
    assert cache.path("1") is None
