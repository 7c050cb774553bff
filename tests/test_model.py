"""ISaeRFTModel: exact identity at init, the splice formula, gradients, API, bad input.

The matrix runs every component kind against every SAE architecture, as PEFT's tests do."""

from __future__ import annotations

import pytest
import torch
from factories import ARCHITECTURES, tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel, component_kinds

KINDS = sorted(component_kinds())
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))


def _perturb(wrapped: ISaeRFTModel, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in wrapped.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_identity_at_init_is_bit_exact(arch, kind, dtype, tokens):
    base_model = tiny_model(dtype=dtype)
    sae = tiny_sae(arch, dtype=dtype)
    base = base_model(tokens)
    wrapped = ISaeRFTModel(base_model, sae, ISaeRFTConfig(component=kind))
    assert torch.equal(wrapped(tokens), base)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", KINDS)
def test_site_equals_formula_with_saelens_decode(arch, kind, model, tokens):
    """x + decode(component(f)) - decode(f), computed with SAELens' own decode."""
    sae = tiny_sae(arch)
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK]
    f = sae.encode(x)
    component = wrapped.sites[0].component
    expected = x + sae.decode(f + component.latent_delta(f)) - sae.decode(f)
    got = wrapped.sites[0](x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(got, x)


@pytest.mark.parametrize("norm", ["layer_norm", "constant_norm_rescale"])
def test_runtime_normalised_sae_matches_formula(norm, model, tokens):
    sae = tiny_sae("standard", normalize_activations=norm)
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale_bias"))
    _perturb(wrapped)
    x = model.run_with_cache(tokens, names_filter=HOOK)[1][HOOK]
    f = sae.encode(x)
    delta = wrapped.sites[0].component.latent_delta(f)
    recon_edit = sae.decode(f + delta)
    sae.encode(x)  # decode consumes the per-token statistics encode stores
    expected = x + recon_edit - sae.decode(f)
    torch.testing.assert_close(wrapped.sites[0](x), expected, rtol=1e-4, atol=1e-5)


def test_hook_z_site_matches_formula(model, tokens):
    hook = "blocks.0.attn.hook_z"
    sae = tiny_sae("standard", hook_name=hook, reshape_activations="hook_z")
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale"))
    assert torch.equal(wrapped(tokens), model(tokens))
    _perturb(wrapped)
    x = model.run_with_cache(tokens, names_filter=hook)[1][hook]
    f = sae.encode(x)
    delta = wrapped.sites[0].component.latent_delta(f)
    expected = x + sae.decode(f + delta) - sae.decode(f)
    torch.testing.assert_close(wrapped.sites[0](x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_only_components(kind, model, tokens):
    sae = tiny_sae("topk")
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    loss = wrapped(tokens, return_type="loss")
    loss.backward()
    frozen = list(model.parameters()) + list(sae.parameters())
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    grads = [p.grad for p in wrapped.trainable_parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_sparse_and_dense_decode_agree(arch, model, tokens):
    """The gather path (with its active-count search) equals the dense matmul, grads too."""
    sae = tiny_sae(arch, d_sae=512)
    sparse = ISaeRFTModel(model, sae, ISaeRFTConfig(sparse_decode_density=0.9))
    dense = ISaeRFTModel(model, sae, ISaeRFTConfig(sparse_decode_density=0.0))
    _perturb(sparse)
    dense.load_trainable_state_dict(sparse.trainable_state_dict())
    encodes = []
    encode = sae.encode
    sae.encode = lambda x: encodes.append(1) or encode(x)  # type: ignore[method-assign]
    out_s = sparse(tokens, return_type="loss")
    used_encode = bool(encodes)
    out_d = dense(tokens, return_type="loss")
    if arch == "topk":  # the active codes come straight from the top-k, no dense codes
        assert not used_encode and encodes
    else:  # the sparse path really ran, after its active-count search
        assert sparse.sites[0].component._k_hint > 0
    torch.testing.assert_close(out_s, out_d)
    out_s.backward()
    out_d.backward()
    torch.testing.assert_close(
        sparse.trainable_parameters()[0].grad, dense.trainable_parameters()[0].grad
    )


def test_one_encode_per_forward(model, tokens, monkeypatch):
    sae = tiny_sae("jumprelu")
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig())
    calls = {"encode": 0, "decode": 0}
    encode, decode = sae.encode, sae.decode

    def counting_encode(x):
        calls["encode"] += 1
        return encode(x)

    def counting_decode(f):
        calls["decode"] += 1
        return decode(f)

    monkeypatch.setattr(sae, "encode", counting_encode)
    monkeypatch.setattr(sae, "decode", counting_decode)
    wrapped(tokens)
    assert calls == {"encode": 1, "decode": 0}


def test_precomputed_latents_skip_encode(model, tokens):
    sae = tiny_sae("standard")
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig())
    _perturb(wrapped)
    f = sae.encode(model.run_with_cache(tokens, names_filter=HOOK)[1][HOOK])
    torch.testing.assert_close(wrapped(tokens, latents={HOOK: f}), wrapped(tokens))


def test_disabled_gives_base_model_and_restores(model, tokens):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig())
    _perturb(wrapped)
    base = model(tokens)
    assert not torch.equal(wrapped(tokens), base)
    with wrapped.disabled():
        assert torch.equal(wrapped(tokens), base)
    assert not torch.equal(wrapped(tokens), base)
    # hooks never leak into the wrapped model outside a call
    assert torch.equal(model(tokens), base)


@pytest.mark.parametrize("arch", ["standard", "topk"])  # topk: the active-codes path too
def test_edit_factor_scales_the_edit_and_restores(arch, model, tokens):
    sae = tiny_sae(arch)
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale_bias"))
    _perturb(wrapped)
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK]
    edited = wrapped.sites[0](x)
    with wrapped.edit_factor(-1.0):
        torch.testing.assert_close(wrapped.sites[0](x), 2 * x - edited, rtol=1e-5, atol=1e-5)
    with wrapped.edit_factor(0):
        assert torch.equal(wrapped(tokens), model(tokens))
    assert torch.equal(wrapped.sites[0](x), edited)  # restored
    with pytest.raises(ValueError, match="finite"), wrapped.edit_factor(float("nan")):
        pass
    assert wrapped.sites[0].factor == 1.0


def test_several_sites_at_once(model, tokens):
    saes = [
        tiny_sae("standard", hook_name=HOOK),
        tiny_sae("topk", hook_name="blocks.2.hook_resid_pre"),
    ]
    wrapped = ISaeRFTModel(model, saes, ISaeRFTConfig(component="scale_bias"))
    assert wrapped.hook_names == [HOOK, "blocks.2.hook_resid_pre"]
    assert torch.equal(wrapped(tokens), model(tokens))
    _perturb(wrapped)
    loss = wrapped(tokens, return_type="loss")
    loss.backward()
    assert all(p.grad is not None for p in wrapped.trainable_parameters())


def test_hook_names_select_a_subset(model):
    saes = [
        tiny_sae("standard", hook_name=HOOK),
        tiny_sae("standard", hook_name="blocks.2.hook_resid_pre"),
    ]
    wrapped = ISaeRFTModel(model, saes, ISaeRFTConfig(hook_names=["blocks.2.hook_resid_pre"]))
    assert wrapped.hook_names == ["blocks.2.hook_resid_pre"]


def test_generate_equals_base_at_init(model):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component="mlp"))
    prompt = torch.tensor([[1, 2, 3, 4]])
    kwargs = {"max_new_tokens": 6, "do_sample": False, "verbose": False, "stop_at_eos": False}
    assert torch.equal(wrapped.generate(prompt, **kwargs), model.generate(prompt, **kwargs))


def test_generate_uses_edits(model):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component="bias"))
    _perturb(wrapped)
    prompt = torch.tensor([[1, 2, 3, 4]])
    kwargs = {"max_new_tokens": 6, "do_sample": False, "verbose": False, "stop_at_eos": False}
    generated = wrapped.generate(prompt, use_past_kv_cache=False, **kwargs)
    with torch.no_grad():
        greedy = prompt
        for _ in range(6):
            greedy = torch.cat([greedy, wrapped(greedy)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generated, greedy)


def test_parameter_accounting(model, capsys):
    sae = tiny_sae("standard", d_sae=128)
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale_bias"))
    assert wrapped.num_trainable_parameters() == 256
    assert [n for n, _ in wrapped.named_trainable_parameters()] == [
        f"{HOOK}/scale.scale_delta",
        f"{HOOK}/shift.bias",
    ]
    wrapped.print_trainable_parameters()
    assert "trainable params: 256 ||" in capsys.readouterr().out


def test_latent_edits_and_moved_latents(model):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component="scale_bias"))
    assert wrapped.num_moved_latents() == 0
    with torch.no_grad():
        wrapped.site(HOOK).component.scale.scale_delta[5] = 0.5
        wrapped.site(HOOK).component.shift.bias[7] = -0.25
    edits = wrapped.latent_edits()[HOOK]
    assert edits["scale"][5] == 0.5 and edits["bias"][7] == -0.25
    assert wrapped.num_moved_latents() == 2


def test_deviation_l1_tracks_parameters(model, tokens):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component="scale"))
    with torch.no_grad():
        wrapped.trainable_parameters()[0][:3] = torch.tensor([0.5, -0.25, 0.25])
    wrapped(tokens)
    assert wrapped.deviation_l1().item() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_anchored_l1_is_the_distance_from_the_anchor(kind, model, tokens):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    wrapped.set_anchor()
    assert wrapped.anchored
    assert wrapped.deviation_l1().item() == 0.0  # no forward needed: it reads parameters
    first = wrapped.trainable_parameters()[0]
    with torch.no_grad():
        first.view(-1)[:2] += torch.tensor([0.5, -0.25])
    wrapped(tokens)
    assert wrapped.deviation_l1().item() == pytest.approx(0.75, abs=1e-5)


def test_tokenizer_helpers_pass_through(model):
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig())
    assert wrapped.cfg is model.cfg


# --- bad input: clear errors, model untouched --------------------------------------------


def _assert_untouched(model):
    assert all(p.requires_grad for p in model.parameters())


@pytest.fixture
def fresh_model():
    return tiny_model()


@pytest.mark.parametrize(
    ("make_sae", "config", "error", "match"),
    [
        (
            lambda: tiny_sae(hook_name="blocks.9.hook_resid_post"),
            None,
            ValueError,
            "not in the model",
        ),
        (lambda: tiny_sae(d_in=16), None, ValueError, "d_in=16"),
        (lambda: [tiny_sae(), tiny_sae(seed=1)], None, ValueError, "two SAEs"),
        (lambda: tiny_sae(dtype=torch.float64), None, ValueError, "sae.to"),
        (
            lambda: tiny_sae(),
            ISaeRFTConfig(hook_names=["blocks.0.hook_resid_pre"]),
            ValueError,
            "no SAE",
        ),
        (lambda: [], None, ValueError, "at least one SAE"),
        (lambda: "not an sae", None, TypeError, "sae_lens.SAE"),
    ],
)
def test_bad_input_raises_and_leaves_model_untouched(fresh_model, make_sae, config, error, match):
    with pytest.raises(error, match=match):
        ISaeRFTModel(fresh_model, make_sae(), config)
    _assert_untouched(fresh_model)


def test_missing_hook_name_metadata(fresh_model):
    sae = tiny_sae()
    sae.cfg.metadata.hook_name = None
    with pytest.raises(ValueError, match="hook_name"):
        ISaeRFTModel(fresh_model, sae)
    _assert_untouched(fresh_model)


def test_non_hooked_transformer_is_rejected():
    with pytest.raises(TypeError, match="HookedTransformer"):
        ISaeRFTModel(torch.nn.Linear(2, 2), tiny_sae())  # type: ignore[arg-type]


TOPK_VARIANTS = [
    {},
    {"normalize_activations": "layer_norm"},
    {"normalize_activations": "constant_norm_rescale"},
    {"rescale_acts_by_decoder_norm": True},
    {"hook_name": "blocks.0.attn.hook_z", "reshape_activations": "hook_z"},
]


@pytest.mark.parametrize(
    "cfg", TOPK_VARIANTS, ids=lambda c: "-".join(map(str, c.values())) or "plain"
)
def test_topk_active_codes_are_the_encode(cfg, model, tokens):
    """The TopK fast path (no dense codes) is SAELens' encode, and the site still matches the
    formula and stays bit-identical at init."""
    from isaerft.site import topk_active_codes

    kwargs = dict(cfg)
    hook = kwargs.pop("hook_name", HOOK)
    sae = tiny_sae("topk", hook_name=hook, **kwargs)
    x = model.run_with_cache(tokens, names_filter=hook)[1][hook]
    values, indices = topk_active_codes(sae, x)
    f = sae.encode(x)
    dense = torch.zeros_like(f).scatter(-1, indices, values)
    assert torch.equal(dense, f)
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="scale"))
    assert torch.equal(wrapped(tokens), model(tokens))
    _perturb(wrapped)
    f = sae.encode(x)
    delta = wrapped.sites[0].component.latent_delta(f)
    recon_edit = sae.decode(f + delta)
    sae.encode(x)  # decode consumes the per-token statistics some normalisations store
    expected = x + recon_edit - sae.decode(f)
    torch.testing.assert_close(wrapped.sites[0](x), expected, rtol=1e-4, atol=1e-5)


def test_topk_fast_path_steps_aside_for_hooks_and_kept_latents(model, tokens):
    from isaerft.site import topk_active_codes

    sae = tiny_sae("topk")
    x = model.run_with_cache(tokens, names_filter=HOOK)[1][HOOK]
    sae.hook_sae_acts_post.add_hook(lambda acts, hook: acts * 2)
    assert topk_active_codes(sae, x) is None  # a hook it would skip: use the real encode
    sae.hook_sae_acts_post.remove_hooks()
    assert topk_active_codes(sae, x) is not None
    assert topk_active_codes(tiny_sae("jumprelu"), x) is None
    site = ISaeRFTModel(model, sae, ISaeRFTConfig()).sites[0]
    site.keep_latents = True  # the audit reads the dense codes: they must be built
    site(x)
    assert site.last_latents is not None and torch.equal(site.last_latents, sae.encode(x))
