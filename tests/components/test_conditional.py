"""The 'conditional' kind: causal gates, readable rules, no KV cache, per-row audit reading."""

from __future__ import annotations

import pytest
import torch
from factories import fit_latent_delta, tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.audit.activations import SiteCodes
from isaerft.audit.table import effective_contribution
from isaerft.components import build_component

D_SAE = 12


def _component(terms: int = 2):
    return build_component(
        "conditional", D_SAE, ISaeRFTConfig(component="conditional", conditional_terms=terms)
    )


def _plant(component, when: int, bias: int, value: float = 2.0) -> None:
    """Term 0: "once latent ``when`` fired, add ``value`` to latent ``bias``"; others off."""
    with torch.no_grad():
        component.when_logit.fill_(-30.0)  # softplus(-30) ~ 1e-13: shut
        component.when_logit[0, when] = 0.5413248546129181  # softplus -> 1.0
        component.bias.zero_()
        component.bias[0, bias] = value


def test_gate_opens_only_from_the_trigger_on():
    component = _component()
    _plant(component, when=3, bias=7)
    f = torch.zeros(1, 6, D_SAE)
    f[0, 2, 3] = 1.5  # the trigger latent fires at position 2
    delta = component.latent_delta(f)
    assert torch.equal(delta[0, :2], torch.zeros(2, D_SAE))
    torch.testing.assert_close(delta[0, 2:, 7], torch.full((4,), 3.0))  # gate 1.5 x bias 2
    assert delta[0, 2:].abs().sum() == delta[0, 2:, 7].abs().sum()


def test_edit_is_causal():
    torch.manual_seed(0)
    component = build_component(
        "conditional", D_SAE, ISaeRFTConfig(component="conditional", init="normal", init_std=0.5)
    )
    f = torch.rand(2, 8, D_SAE)
    later = f.clone()
    later[:, 5:] = torch.rand(2, 3, D_SAE) * 5
    torch.testing.assert_close(
        component.latent_delta(f)[:, :5], component.latent_delta(later)[:, :5]
    )


def test_needs_a_sequence_axis():
    with pytest.raises(ValueError, match="sequence axis"):
        _component().latent_delta(torch.rand(D_SAE))


def test_rules_read_back_the_planted_term():
    component = _component(terms=3)
    _plant(component, when=4, bias=9)
    rule = component.rules(top=1)[0]
    assert rule["when"][0][0] == 4 and rule["bias"][0] == (9, 2.0)
    assert component.edits()["conditional_when"][4] > 0  # the trigger reads as moved


def test_fits_a_rule_that_no_per_latent_edit_can_express():
    """Targets: latent 7 rises by 1 after latent 3 fired, else nothing changes. Adam on the
    component alone recovers the rule and names both latents."""
    torch.manual_seed(0)
    component = _component(terms=2)
    f = (torch.rand(64, 10, D_SAE) < 0.2).float() * torch.rand(64, 10, D_SAE)
    f[..., 3] = 0.0
    rows = torch.arange(32)
    f[rows, torch.randint(0, 5, (32,)), 3] = 1.0  # half the rows carry the trigger
    fired = torch.cummax(f[..., 3], dim=1).values
    target = torch.zeros_like(f)
    target[..., 7] = fired
    assert fit_latent_delta(component, f, target) < 1e-3
    rule = component.rules(top=1)[0]
    assert rule["when"][0][0] == 3 and rule["bias"][0][0] == 7


def test_generate_runs_without_kv_cache_and_matches_greedy():
    model = tiny_model()
    wrapped = ISaeRFTModel(model, tiny_sae("standard"), ISaeRFTConfig(component="conditional"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in wrapped.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    prompt = torch.tensor([[1, 2, 3, 4]])
    kwargs = {"max_new_tokens": 5, "do_sample": False, "verbose": False, "stop_at_eos": False}
    generated = wrapped.generate(prompt, **kwargs)
    with torch.no_grad():
        greedy = prompt
        for _ in range(5):
            greedy = torch.cat([greedy, wrapped(greedy)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generated, greedy)
    with pytest.raises(ValueError, match="use_past_kv_cache"):
        wrapped.generate(prompt, use_past_kv_cache=True, **kwargs)


def test_audit_reading_runs_each_row_as_its_own_sequence():
    component = _component()
    _plant(component, when=3, bias=7)
    # Row 0 fires the trigger; row 1 (after it in the flat token list) does not.
    codes = SiteCodes(
        hook_name="h",
        d_sae=D_SAE,
        token_row=torch.tensor([0, 0, 1, 1]),
        token_pos=torch.tensor([0, 1, 0, 1]),
        tok=torch.tensor([0]),
        lat=torch.tensor([3]),
        val=torch.tensor([1.0]),
        n_rows=2,
    )
    per_latent = effective_contribution(component, codes, torch.ones(D_SAE), chunk=1)
    # Only row 0's two tokens get the +2 (gate 1): mean over 4 tokens = 1.0.
    torch.testing.assert_close(per_latent[7], torch.tensor(1.0, dtype=torch.float64))


def test_unconditional_part_counts_as_moved():
    component = _component()
    with torch.no_grad():
        component.always_bias[5] = 0.5
    assert component.magnitude()[5] == 0.5
