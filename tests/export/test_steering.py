"""``steer``: exported bias vectors reproduce the intervention; hooks never leak."""

from __future__ import annotations

import pytest
import torch

from isaerft.export import steer, vectors_from_model

HOOKS = ("blocks.0.hook_resid_post", "blocks.2.hook_resid_pre")


def _no_hooks_left(hooked):
    return all(not hp.fwd_hooks for hp in hooked.hook_dict.values())


def test_bias_vectors_reproduce_isaerft_logits(make_model, tokens):
    model = make_model("bias", hooks=HOOKS)
    vectors = vectors_from_model(model)
    with torch.no_grad():
        expected = model(tokens)
        base = model.model(tokens)
        with steer(model.model, vectors) as hooked:
            steered = hooked(tokens)
    assert not torch.allclose(expected, base, atol=1e-3)  # the intervention does something
    torch.testing.assert_close(steered, expected, rtol=1e-5, atol=1e-5)
    assert _no_hooks_left(model.model)


def test_steer_adds_multiplier_times_vector_at_every_position(make_model, tokens):
    model = make_model("bias")
    hook = "blocks.1.hook_resid_post"
    vector = torch.randn(32)
    seen = {}

    def capture(activation, hook):
        seen["x"] = activation.clone()

    with torch.no_grad():
        model.model.run_with_hooks(tokens, fwd_hooks=[(hook, capture)])
        base = seen["x"]
        with steer(model, {hook: vector}, multiplier=-2.5):  # an ISaeRFTModel is accepted too
            model.model.run_with_hooks(tokens, fwd_hooks=[(hook, capture)])
    torch.testing.assert_close(seen["x"], base - 2.5 * vector)


def test_multiplier_zero_is_the_base_model(make_model, tokens):
    model = make_model("bias")
    with torch.no_grad(), steer(model.model, vectors_from_model(model), multiplier=0.0) as hooked:
        torch.testing.assert_close(hooked(tokens), model.model(tokens))


def test_hooks_are_removed_when_the_block_raises(make_model, tokens):
    model = make_model("bias")
    vectors = vectors_from_model(model)
    with torch.no_grad():
        base = model.model(tokens)
    with pytest.raises(RuntimeError, match="boom"), steer(model.model, vectors):
        assert not _no_hooks_left(model.model)
        raise RuntimeError("boom")
    assert _no_hooks_left(model.model)
    with torch.no_grad():
        assert torch.equal(model.model(tokens), base)


def test_steering_stacks_with_the_intervention(make_model, tokens):
    model = make_model("bias")
    vectors = vectors_from_model(model)
    with torch.no_grad(), steer(model, vectors, multiplier=-1.0):
        cancelled = model(tokens)  # the site adds v, steering removes it
        steered_only = model.model(tokens)
    with torch.no_grad():
        base = model.model(tokens)
    torch.testing.assert_close(cancelled, base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(steered_only, base, atol=1e-4)


def test_attention_hook_vectors_are_split_into_heads(make_model, tokens):
    model = make_model("bias")
    vector = torch.randn(32)  # n_heads * d_head
    seen = {}

    def capture(activation, hook):
        seen["z"] = activation.clone()

    with torch.no_grad():
        model.model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", capture)])
        base = seen["z"]
        with steer(model.model, {"blocks.0.attn.hook_z": vector}):
            model.model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", capture)])
    torch.testing.assert_close(seen["z"], base + vector.reshape(4, 8))


def test_bad_input_is_refused(make_model):
    hooked = make_model("bias").model
    with (
        pytest.raises(ValueError, match="did you mean"),
        steer(hooked, {"blocks.1.hook_resid_pst": torch.zeros(32)}),
    ):
        pass
    with (
        pytest.raises(ValueError, match="d_model is 32"),
        steer(hooked, {"blocks.1.hook_resid_post": torch.zeros(31)}),
    ):
        pass
    with (
        pytest.raises(ValueError, match="finite"),
        steer(hooked, {"blocks.1.hook_resid_post": torch.zeros(32)}, float("nan")),
    ):
        pass
    with pytest.raises(TypeError, match="HookedTransformer"), steer(object(), {}):  # type: ignore[arg-type]
        pass
    with pytest.raises(FileNotFoundError), steer(hooked, "no/such/file.safetensors"):
        pass
    assert _no_hooks_left(hooked)


def test_files_of_every_format_load_back(make_model, tokens, tmp_path):
    from isaerft.export import load_vectors, save_gguf, save_steering_vectors

    model = make_model("bias", hooks=("blocks.1.hook_resid_post",))
    vectors = vectors_from_model(model)
    vectors.save(tmp_path / "v.safetensors")
    save_gguf(vectors, tmp_path / "v.gguf")
    save_steering_vectors(vectors, tmp_path / "sv.safetensors")
    with torch.no_grad():
        expected = model(tokens)
    for name in ("v.safetensors", "v.gguf", "sv.safetensors"):
        loaded = load_vectors(tmp_path / name)
        assert list(loaded) == ["blocks.1.hook_resid_post"]
        with torch.no_grad(), steer(model.model, tmp_path / name) as hooked:
            torch.testing.assert_close(hooked(tokens), expected, rtol=1e-5, atol=1e-5)
