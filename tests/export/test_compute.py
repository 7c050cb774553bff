"""Vectors from edits: exact bias vectors, data-averaged scale vectors, refusals."""

from __future__ import annotations

import pytest
import torch

from isaerft import ISaeRFTConfig, LatentComponent, register_component
from isaerft.components import base
from isaerft.export import vectors_from_model
from isaerft.export.vectors import explain_ratio

HOOK = "blocks.1.hook_resid_post"


def _effective_rows(sae):
    w = sae.W_dec.detach().float()
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        w = w / w.norm(dim=-1, keepdim=True)
    return w


@pytest.mark.parametrize(
    ("architecture", "sae_kwargs"),
    [("standard", {}), ("jumprelu", {}), ("topk", {"rescale_acts_by_decoder_norm": True})],
)
def test_bias_vector_is_sum_of_bias_times_decoder_rows(make_model, architecture, sae_kwargs):
    model = make_model("bias", architecture=architecture, **sae_kwargs)
    sae, bias = model.sites[0].sae, model.sites[0].component.bias.detach()
    vectors = vectors_from_model(model)
    site = vectors[HOOK]
    assert site.kind == "exact" and site.n_tokens == 0
    expected = sum(bias[i] * _effective_rows(sae)[i] for i in range(sae.cfg.d_sae))
    torch.testing.assert_close(site.vector, expected, rtol=1e-5, atol=1e-5)
    # Coefficients are in units of the stored W_dec rows, whatever the decoder convention.
    torch.testing.assert_close(site.coefficients @ sae.W_dec.detach().float(), site.vector)
    assert vectors.d_model == 32 and vectors.n_layers == 3 and vectors.model_name


def test_bias_vector_does_not_depend_on_data(make_model, tokens):
    model = make_model("bias")
    exact = vectors_from_model(model)[HOOK].vector
    with_data = vectors_from_model(model, tokens)[HOOK]
    assert with_data.kind == "exact"
    assert torch.equal(with_data.vector, exact)


@pytest.mark.parametrize("component", ["scale", "scale_bias", "mlp"])
def test_input_dependent_edits_need_data(make_model, component):
    model = make_model(component)
    with pytest.raises(ValueError, match=r"input-dependent.*--data"):
        vectors_from_model(model)


def test_scale_vector_is_data_mean_of_scaled_latents(make_model):
    model = make_model("scale", architecture="topk", rescale_acts_by_decoder_norm=True)
    site = model.sites[0]
    gen = torch.Generator().manual_seed(3)
    # Ragged sequences: padding positions must not enter the mean.
    sequences = [torch.randint(0, 50, (n,), generator=gen) for n in (9, 4, 7)]
    vectors = vectors_from_model(model, sequences, batch_size=2)
    exported = vectors[HOOK]
    latents = []
    for seq in sequences:
        _, cache = model.model.run_with_cache(seq[None], names_filter=HOOK)
        latents.append(site.sae.encode(cache[HOOK][0]))
    mean_f = torch.cat(latents).mean(0)
    scale_minus_one = site.component.scale_delta.detach()
    expected = (scale_minus_one * mean_f) @ _effective_rows(site.sae)
    assert exported.kind == "data_mean" and exported.n_tokens == 20
    torch.testing.assert_close(exported.vector, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        exported.coefficients @ site.sae.W_dec.detach().float(), exported.vector
    )
    assert not site.keep_latents and site.last_latents is None  # the export leaves no state


def test_mlp_vector_is_data_mean_of_latent_delta(make_model, tokens):
    model = make_model("mlp")
    site = model.sites[0]
    exported = vectors_from_model(model, tokens)[HOOK]
    _, cache = model.model.run_with_cache(tokens, names_filter=HOOK)
    with torch.no_grad():
        delta = site.component.latent_delta(site.sae.encode(cache[HOOK]))
    expected = delta.reshape(-1, delta.shape[-1]).mean(0) @ _effective_rows(site.sae)
    torch.testing.assert_close(exported.vector, expected, rtol=1e-4, atol=1e-5)


def test_layer_norm_sae_has_no_exact_vector(make_model):
    model = make_model("bias", normalize_activations="layer_norm")
    with pytest.raises(ValueError, match="run time"):
        vectors_from_model(model)


def test_layer_norm_sae_exports_mean_of_actual_change(make_model, tokens):
    model = make_model("bias", normalize_activations="layer_norm")
    site = model.sites[0]
    exported = vectors_from_model(model, tokens)[HOOK]
    _, cache = model.model.run_with_cache(tokens, names_filter=HOOK)
    x = cache[HOOK]
    with torch.no_grad():
        expected = (site(x) - x).reshape(-1, x.shape[-1]).mean(0)
    assert exported.kind == "data_mean" and exported.coefficients is None
    torch.testing.assert_close(exported.vector, expected, rtol=1e-4, atol=1e-5)


def test_several_sites_and_metadata(make_model, tokens):
    hooks = ("blocks.0.hook_resid_post", "blocks.2.hook_resid_pre")
    model = make_model("scale", hooks=hooks)
    model.sites[0].sae.cfg.metadata.neuronpedia_id = "tiny/0-res"
    vectors = vectors_from_model(model, tokens, source_run="runs/x")
    assert vectors.hook_names == list(hooks)
    assert vectors.source_run == "runs/x"
    assert vectors[hooks[0]].neuronpedia_id == "tiny/0-res"
    assert vectors[hooks[0]].sae_fingerprint.startswith("sha256:")
    assert vectors[hooks[1]].block == 2
    assert all(site.n_tokens == tokens.numel() for site in vectors.sites)


def test_eval_data_measures_the_gap(make_model, tokens):
    model = make_model("bias")
    vectors = vectors_from_model(model, eval_data=tokens)
    gap = vectors.approximation
    assert gap is not None and gap["n_tokens"] == tokens.numel()
    assert gap["kl_base"] > 1e-4
    assert gap["kl_steered"] < 1e-6 * max(1.0, gap["kl_base"])  # a bias export is exact
    assert "KL(ISaeRFT || steered)" in vectors.summary()
    assert "= the constant vector reproduces 100% of what the trained edit does" in (
        vectors.summary()
    )


def test_scale_gap_is_between_zero_and_base(make_model, tokens):
    model = make_model("scale")
    vectors = vectors_from_model(model, tokens, eval_data=tokens)
    gap = vectors.approximation
    assert 0.0 < gap["kl_steered"] < gap["kl_base"]
    ratio = gap["kl_steered"] / gap["kl_base"]
    note = vectors.summary().splitlines()[-1]
    assert note.startswith(f"ratio {ratio:.2g} = the constant vector ")
    if ratio >= 0.05:
        assert "scale edits depend on the input" in note and "component=bias" in note


def test_the_ratio_is_explained_in_one_sentence():
    note = explain_ratio(0.99, ["scale"])
    assert note.startswith("ratio 0.99 = the constant vector misses 99% of what the trained edit")
    assert "(0 = reproduces it, 1 = no better than the base model)" in note
    assert "scale edits depend on the input" in note and "intervention.component=bias" in note
    assert "misses" not in explain_ratio(0.01, ["scale"])
    assert "further from the trained model" in explain_ratio(1.4, [])
    assert explain_ratio(float("nan"), []).startswith("ratio n/a")


def test_rejects_non_isaerft_model(make_model):
    with pytest.raises(TypeError, match="ISaeRFTModel"):
        vectors_from_model(make_model("bias").model)


class _HalfBias(LatentComponent):
    """A kind the export has never heard of whose edit is a constant shift ``b / 2``."""

    def __init__(self, d_sae: int, config: ISaeRFTConfig) -> None:
        super().__init__(d_sae, config)
        self.doubled = torch.nn.Parameter(torch.zeros(d_sae))

    def latent_delta(self, f: torch.Tensor) -> torch.Tensor:
        return (self.doubled / 2).to(f.dtype).expand_as(f)

    def edits(self) -> dict[str, torch.Tensor]:
        return {"half_bias": self.doubled / 2}

    def constant_shift(self) -> torch.Tensor:
        return self.doubled.detach() / 2


def test_a_new_constant_shift_kind_exports_exactly(make_model):
    register_component("half_bias", _HalfBias)
    try:
        model = make_model("half_bias")
        shift = model.sites[0].component.constant_shift()
        site = vectors_from_model(model)[HOOK]  # no data needed: the kind answered for itself
        assert site.kind == "exact"
        torch.testing.assert_close(site.vector, shift @ _effective_rows(model.sites[0].sae))
    finally:
        base._REGISTRY.pop("half_bias")
