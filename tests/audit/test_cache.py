"""What the audit keeps across audits: keys of exactly what each result is computed from, kept
in memory and in an optional folder, whose files are used only when they read back as their
key's result and are never replaced."""

from __future__ import annotations

import json

import pytest
import torch
from audit.helpers import HOOK
from factories import tiny_model, tiny_sae

from isaerft.audit import cache as kept_results
from isaerft.audit.activations import SiteCodes, collect_codes
from isaerft.audit.cache import MEMORY_NULLS, AuditCache, codes_key, null_key
from isaerft.audit.data import AuditData

KEY = "k" * 64


@pytest.fixture(autouse=True)
def _empty_memory():
    kept_results.forget()
    yield
    kept_results.forget()


def matrices(flip: tuple[int, int] | None = None) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    prompt = (torch.rand(50, 8, generator=gen) < 0.2).float()
    completion = (torch.rand(50, 6, generator=gen) < 0.2).float()
    if flip is not None:
        prompt[flip] = 1 - prompt[flip]
    return [("h", prompt, completion)]


def rows(n: int = 6, seed: int = 0) -> AuditData:
    gen = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(0, 50, (int(k),), generator=gen)
        for k in torch.randint(3, 9, (n,), generator=gen)
    ]
    return AuditData(ids, [1] * n, [{"text": ""}] * n)


def test_the_null_key_follows_every_input() -> None:
    base = null_key(matrices(), size=20, draws=10)
    assert null_key(matrices(), size=20, draws=10) == base
    assert null_key(matrices(flip=(3, 2)), size=20, draws=10) != base
    assert null_key(matrices(), size=21, draws=10) != base
    assert null_key(matrices(), size=20, draws=11) != base
    ((hook, p, c),) = matrices()
    assert null_key([("other", p, c)], size=20, draws=10) != base
    assert null_key([(hook, p[:, :7], c)], size=20, draws=10) != base


def test_the_codes_key_follows_the_model_the_sae_the_rows_and_the_batches() -> None:
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    base = codes_key(model, [sae], rows(), 2)
    assert codes_key(model, [sae], rows(), 2) == base
    assert codes_key(model, [sae], rows(), 3) != base
    assert codes_key(model, [sae], rows(seed=1), 2) != base
    assert codes_key(model, [tiny_sae(hook_name=HOOK, seed=1)], rows(), 2) != base
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # an in-place change to a live model's weights
    changed = codes_key(model, [sae], rows(), 2)
    assert changed != base
    # A weight replaced by another tensor (both never changed in place: the same version) is
    # read again.
    name, weight = list(model.named_parameters())[-1]
    assert weight._version == 0
    module = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(module, name.rpartition(".")[2], torch.nn.Parameter(weight.detach() + 1.0))
    assert codes_key(model, [sae], rows(), 2) != changed


def test_a_null_kept_in_a_folder_is_read_back(tmp_path) -> None:
    cache = AuditCache(tmp_path)
    calls = []
    values = cache.null(KEY, 3, lambda: calls.append(1) or [1.5, 0.0, 2.25])
    assert values == [1.5, 0.0, 2.25]
    path = tmp_path / f"association-null-{KEY}.json"
    assert json.loads(path.read_text())["null"] == values
    kept_results.forget()  # as a new process would start
    assert cache.null(KEY, 3, lambda: calls.append(1) or [9.0] * 3) == values
    assert len(calls) == 1


def test_codes_kept_in_a_folder_are_the_computed_ones(tmp_path) -> None:
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    data = rows()
    fresh = collect_codes(model, [sae], data, batch_size=2)
    key = codes_key(model, [sae], data, 2)
    cache = AuditCache(tmp_path)
    assert cache.codes(key, lambda: fresh) is fresh
    assert (tmp_path / f"codes-{key}.safetensors").is_file()
    kept_results.forget()
    read = cache.codes(key, lambda: pytest.fail("recomputed"))
    assert list(read) == [HOOK]
    for field in ("token_row", "token_pos", "tok", "lat", "val"):
        assert torch.equal(getattr(read[HOOK], field), getattr(fresh[HOOK], field)), field
    assert (read[HOOK].d_sae, read[HOOK].n_rows) == (fresh[HOOK].d_sae, fresh[HOOK].n_rows)


def kept(**changes: object) -> str:
    """A kept null's file content for ``KEY`` and 3 draws, with ``changes``."""
    entry = {"format": "isaerft-audit-cache", "version": 1, "key": KEY}
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
    path = tmp_path / f"association-null-{KEY}.json"
    path.write_text(content)
    assert AuditCache(tmp_path).null(KEY, 3, lambda: [4.0, 5.0, 6.0]) == [4.0, 5.0, 6.0]
    assert path.read_text() == content


def site(**changes: object) -> SiteCodes:
    parts = {
        "token_row": torch.tensor([0, 0, 1]),
        "token_pos": torch.tensor([0, 1, 0]),
        "tok": torch.tensor([0, 2]),
        "lat": torch.tensor([1, 3]),
        "val": torch.tensor([0.5, 1.5]),
    }
    return SiteCodes(**{"hook_name": HOOK, "d_sae": 4, "n_rows": 2, **parts, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"lat": torch.tensor([1, 4])},  # a latent beyond d_sae
        {"tok": torch.tensor([0, 3])},  # a token beyond the rows' tokens
        {"val": torch.tensor([0.5])},  # parts of different lengths
        {"n_rows": 1},  # a token of a row beyond n_rows
    ],
    ids=["latent", "token", "lengths", "rows"],
)
def test_codes_that_do_not_hang_together_are_not_used_nor_replaced(tmp_path, bad) -> None:
    writer = AuditCache(tmp_path)
    writer.codes(KEY, lambda: {HOOK: site(**bad)})
    path = tmp_path / f"codes-{KEY}.safetensors"
    before = path.read_bytes()
    kept_results.forget()
    good = {HOOK: site()}
    assert AuditCache(tmp_path).codes(KEY, lambda: good) is good
    assert path.read_bytes() == before


def test_an_unreadable_codes_file_is_not_used_nor_replaced(tmp_path) -> None:
    path = tmp_path / f"codes-{KEY}.safetensors"
    path.write_bytes(b"not a safetensors file")
    good = {HOOK: site()}
    assert AuditCache(tmp_path).codes(KEY, lambda: good) is good
    assert path.read_bytes() == b"not a safetensors file"


def test_codes_of_another_key_are_not_used(tmp_path) -> None:
    AuditCache(tmp_path).codes(KEY, lambda: {HOOK: site()})
    other = "o" * 64
    (tmp_path / f"codes-{KEY}.safetensors").rename(tmp_path / f"codes-{other}.safetensors")
    kept_results.forget()
    good = {HOOK: site()}
    assert AuditCache(tmp_path).codes(other, lambda: good) is good


def test_a_result_found_in_memory_also_goes_to_the_folder(tmp_path) -> None:
    AuditCache().null(KEY, 3, lambda: [1.0, 2.0, 3.0])
    assert AuditCache(tmp_path).null(KEY, 3, lambda: [9.0, 9.0, 9.0]) == [1.0, 2.0, 3.0]
    assert json.loads((tmp_path / f"association-null-{KEY}.json").read_text())["null"] == [
        1.0,
        2.0,
        3.0,
    ]


def test_memory_keeps_the_latest_nulls() -> None:
    cache = AuditCache()
    for i in range(MEMORY_NULLS + 1):
        cache.null(f"{i}", 1, lambda i=i: [float(i)])
    assert cache.null("0", 1, lambda: [-1.0]) == [-1.0]
    assert cache.null(f"{MEMORY_NULLS}", 1, lambda: [-1.0]) == [float(MEMORY_NULLS)]
    assert cache.path("x") is None
