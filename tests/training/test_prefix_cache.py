"""Prefix caching: the same loss and gradients as the full forward; keyed reuse on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factories import tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.training import PrefixCache, PrefixCacheStore
from isaerft.training.data import tokenize
from isaerft.training.datamodule import BatchPlan, SequenceBatcher
from isaerft.training.module import ISaeRFTLightningModule
from isaerft.training.prefix_cache import find_boundary
from isaerft.training.recipe import DataConfig, ObjectiveConfig, OptimConfig


@pytest.fixture(scope="module")
def base(tiny_setup):  # type: ignore[no-untyped-def]
    model, _ = tiny_setup.load()
    return model


@pytest.fixture(scope="module")
def data(tiny_setup):  # type: ignore[no-untyped-def]
    rows = tiny_setup.sft_rows(12)
    return tokenize(
        rows, DataConfig(path="x"), objective="sft", tokenizer=tiny_setup.tokenizer(), n_ctx=32
    )


def edited(base, hooks: list[str], component: str = "scale") -> ISaeRFTModel:  # type: ignore[no-untyped-def]
    saes = [tiny_sae("topk", hook_name=h, seed=i) for i, h in enumerate(hooks)]
    model = ISaeRFTModel(base, saes, ISaeRFTConfig(component=component))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def loss_and_grads(
    model: ISaeRFTModel, batch: dict, boundary=None
) -> tuple[float, list[torch.Tensor]]:  # type: ignore[no-untyped-def]
    module = ISaeRFTLightningModule(model, ObjectiveConfig(kind="sft"), OptimConfig(), 1, boundary)
    model.zero_grad()
    loss = module.compute_losses({"main": batch})["loss"]
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in model.trainable_parameters()]


@pytest.mark.parametrize(
    ("hooks", "mode"),
    [
        (["blocks.1.hook_resid_pre"], "resid_pre"),
        (["blocks.1.hook_resid_post"], "resid_post"),
        (["blocks.2.hook_resid_post"], "resid_post"),
        (["blocks.1.hook_mlp_out", "blocks.2.hook_resid_pre"], "block"),
        (["blocks.0.hook_resid_pre", "blocks.2.hook_resid_post"], "resid_pre"),
    ],
)
def test_cached_forward_matches_full_forward(base, data, hooks, mode) -> None:  # type: ignore[no-untyped-def]
    model = edited(base, hooks)
    assert find_boundary(model).mode == mode
    cache = PrefixCache.build(model, data.streams["main"].ids, batch_size=5)
    plain = SequenceBatcher(data, BatchPlan(len(data), 6, seed=0), pad_id=0)
    cached = SequenceBatcher(
        data, BatchPlan(len(data), 6, seed=0), pad_id=0, caches={"main": cache}
    )
    for position in range(2):
        loss, grads = loss_and_grads(model, plain.batch(position, 0, 1))
        batch = cached.batch(position, 0, 1)
        assert ("latents" in batch) == (mode != "block")
        loss_c, grads_c = loss_and_grads(model, batch, find_boundary(model))
        assert loss_c == pytest.approx(loss, abs=1e-5)
        for g, gc in zip(grads, grads_c):
            torch.testing.assert_close(gc, g, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("hooks", "mode"),
    [
        (["blocks.1.hook_resid_post"], "resid_post"),  # the site runs outside the model
        (["blocks.1.hook_mlp_out", "blocks.2.hook_resid_pre"], "block"),
    ],
)
def test_cached_reps_matches_full_forward(tiny_setup, base, hooks, mode) -> None:  # type: ignore[no-untyped-def]
    """``reps`` also runs the edit negated: the cached path must negate it the same way."""
    model = edited(base, hooks, component="scale_bias")
    assert find_boundary(model).mode == mode
    data = tokenize(
        tiny_setup.preference_rows(8), DataConfig(path="x"), objective="reps",
        tokenizer=tiny_setup.tokenizer(), n_ctx=32,
    )  # fmt: skip
    caches = {name: PrefixCache.build(model, data.streams[name].ids) for name in data.streams}
    objective = ObjectiveConfig(kind="reps")
    losses = []
    for caches_used, boundary in (({}, None), (caches, find_boundary(model))):
        batcher = SequenceBatcher(data, BatchPlan(len(data), 4, seed=0), 0, caches_used)
        module = ISaeRFTLightningModule(model, objective, OptimConfig(), 1, boundary)
        losses.append(
            float(module.compute_losses({"main": batcher.batch(0, 0, 1)})["loss"].detach())
        )
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)


def test_base_logits_from_cache_match_disabled_model(base, data) -> None:  # type: ignore[no-untyped-def]
    model = edited(base, ["blocks.1.hook_resid_post"])
    cache = PrefixCache.build(model, data.streams["main"].ids)
    batch = SequenceBatcher(data, BatchPlan(len(data), 4, 0), 0, {"main": cache}).batch(0, 0, 1)
    module = ISaeRFTLightningModule(
        model, ObjectiveConfig(), OptimConfig(), 1, find_boundary(model)
    )
    with torch.no_grad(), model.disabled():
        expected = base(batch["input_ids"], attention_mask=batch["attention_mask"])
    got = module.logits(batch, base=True)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-4)


def test_store_persists_and_reuses_by_key(base, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = edited(base, ["blocks.1.hook_resid_pre"])
    seqs = data.streams["main"].ids
    cache = PrefixCacheStore(tmp_path).get(model, seqs)
    assert len(list(tmp_path.iterdir())) == 1 and cache.nbytes > 0
    loaded = PrefixCacheStore(tmp_path).get(model, seqs)  # a new store: read from disk
    assert loaded.key == cache.key
    torch.testing.assert_close(loaded.resid, cache.resid)
    r1, l1 = cache.gather([0, 3], 20)
    r2, l2 = loaded.gather([0, 3], 20)
    assert torch.equal(r1, r2) and l1 is not None and l2 is not None and torch.equal(l1, l2)
    PrefixCacheStore(tmp_path).get(model, seqs[:5])  # other data: another key
    assert len(list(tmp_path.iterdir())) == 2


def test_cached_latents_equal_sae_encode(base, data) -> None:  # type: ignore[no-untyped-def]
    model = edited(base, ["blocks.1.hook_resid_pre"])
    seqs = data.streams["main"].ids
    cache = PrefixCache.build(model, seqs)
    resid, latents = cache.gather([2], len(seqs[2]))
    _, acts = base.run_with_cache(seqs[2][None], names_filter="blocks.1.hook_resid_pre")
    torch.testing.assert_close(resid, acts["blocks.1.hook_resid_pre"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(latents, model.site("blocks.1.hook_resid_pre").sae.encode(resid))


def test_unsupported_hook_is_rejected(base) -> None:  # type: ignore[no-untyped-def]
    model = ISaeRFTModel(base, tiny_sae(hook_name="hook_embed"))
    with pytest.raises(ValueError, match="inside a block"):
        find_boundary(model)


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "meta"])
def test_a_damaged_cache_on_disk_is_rebuilt_never_used(base, data, tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    import warnings

    model = edited(base, ["blocks.1.hook_resid_pre"])
    seqs = data.streams["main"].ids
    good = PrefixCacheStore(tmp_path).get(model, seqs)
    folder = next(tmp_path.iterdir())
    tensors = folder / "prefix.safetensors"
    if damage == "overwritten":  # a valid file, but of other tokens: the old bug used it
        other = PrefixCache.build(model, seqs[:3])
        other.save(tmp_path / "other")
        (tmp_path / "other" / "prefix.safetensors").replace(tensors)
    elif damage == "truncated":
        tensors.write_bytes(tensors.read_bytes()[:100])
    else:
        (folder / "meta.json").write_text('{"format": "isaerft.pref')
    with pytest.warns(UserWarning, match="prefix cache not used, rebuilding it"):
        rebuilt = PrefixCacheStore(tmp_path).get(model, seqs)
    assert torch.equal(rebuilt.resid, good.resid) and torch.equal(rebuilt.offsets, good.offsets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache was saved and now loads cleanly
        again = PrefixCacheStore(tmp_path).get(model, seqs)
    assert torch.equal(again.resid, good.resid)


def test_load_checks_the_key(base, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from isaerft.training.prefix_cache import CorruptPrefixCacheError

    model = edited(base, ["blocks.1.hook_resid_pre"])
    PrefixCache.build(model, data.streams["main"].ids, key="a").save(tmp_path)
    assert PrefixCache.load(tmp_path, "a").key == "a"
    with pytest.raises(CorruptPrefixCacheError, match="another cache key"):
        PrefixCache.load(tmp_path, "b")
