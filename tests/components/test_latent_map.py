"""The 'latent_map' kind: a position-local read/write rule, its rank-r decode, readable rules."""

from __future__ import annotations

import torch
from factories import fit_latent_delta, tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.components import build_component
from isaerft.site import LinearDecoder

D_SAE = 12


def _component(rank: int = 1):
    config = ISaeRFTConfig(component="latent_map", map_rank=rank)
    return build_component("latent_map", D_SAE, config)


def _plant(component, read: int, write: int, value: float = 2.0, term: int = 0) -> None:
    """Term ``term``: "where latent ``read`` fires with a, add ``value * a`` to ``write``"."""
    with torch.no_grad():
        component.read.zero_()
        component.write.zero_()
        component.read[read, term] = 1.0
        component.write[term, write] = value


def test_rule_writes_only_where_its_latent_fires_and_in_proportion():
    component = _component()
    _plant(component, read=3, write=7)
    f = torch.zeros(1, 5, D_SAE)
    f[0, 2, 3] = 1.5
    f[0, 4, 3] = 0.5
    f[0, :, 1] = 1.0  # another latent everywhere: read by no rule
    delta = component.latent_delta(f)
    expected = torch.zeros_like(f)
    expected[0, 2, 7], expected[0, 4, 7] = 3.0, 1.0
    torch.testing.assert_close(delta, expected)


def test_rank_r_decode_equals_the_dense_decode_of_its_delta():
    torch.manual_seed(0)
    sae = tiny_sae("standard")
    config = ISaeRFTConfig(component="latent_map", map_rank=3, init="normal", init_std=0.3)
    component = build_component("latent_map", sae.cfg.d_sae, config)
    decoder = LinearDecoder(sae)
    f = torch.relu(torch.randn(2, 4, sae.cfg.d_sae))
    out, l1 = component.decoded_delta(f, decoder)
    delta = component.latent_delta(f)
    torch.testing.assert_close(out, decoder.dense(delta))
    torch.testing.assert_close(l1, delta.abs().sum(-1).mean())


def test_rules_read_back_the_planted_terms_strongest_first():
    component = _component(rank=2)
    _plant(component, read=4, write=9, value=0.5, term=0)
    with torch.no_grad():
        component.read[2, 1] = 1.0
        component.write[1, 6] = -3.0
    first, second = component.rules(top=1)
    assert first["read"] == [(2, 1.0)] and first["write"] == [(6, -3.0)]
    assert second["read"] == [(4, 1.0)] and second["write"] == [(9, 0.5)]
    assert component.matrix()[2, 6] == -3.0 and component.matrix()[4, 9] == 0.5
    edits = component.edits()
    assert edits["map_read"].nonzero().flatten().tolist() == [2, 4]
    assert edits["map_write"].nonzero().flatten().tolist() == [6, 9]


def test_fits_a_substitution_that_no_per_latent_edit_can_express():
    """Targets: wherever latent 3 fires, move its activation onto latent 7 (3 -> 0, 7 += a).
    A per-latent scale can silence 3 but not write 7 there; a bias writes 7 everywhere."""
    torch.manual_seed(0)
    component = _component()
    f = (torch.rand(64, 10, D_SAE) < 0.2).float() * torch.rand(64, 10, D_SAE)
    target = torch.zeros_like(f)
    target[..., 3] = -f[..., 3]
    target[..., 7] = f[..., 3]
    assert fit_latent_delta(component, f, target) < 1e-4
    rule = component.rules(top=2)[0]
    assert rule["read"][0][0] == 3 and {rule["write"][0][0], rule["write"][1][0]} == {3, 7}


def test_spliced_model_is_the_base_at_init_and_keeps_the_kv_cache():
    model = tiny_model()
    sae = tiny_sae("standard")
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component="latent_map", map_rank=2))
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(wrapped(tokens), model(tokens))
        for p in wrapped.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
        assert not torch.equal(wrapped(tokens), model(tokens))
    # Position-local: generation keeps the cache ('conditional' refuses it).
    assert not wrapped.sites[0].component.needs_full_context()
    kwargs = {"max_new_tokens": 4, "do_sample": False, "verbose": False, "stop_at_eos": False}
    assert wrapped.generate(tokens, use_past_kv_cache=True, **kwargs).shape == (1, 9)
