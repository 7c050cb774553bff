"""Edit attribution: integrated gradients split the learned edit's gain over the latents."""

from __future__ import annotations

import torch
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.audit.attribution import EditAttribution, latent_shares, ordinary_rows
from isaerft.audit.data import AuditData
from isaerft.audit.localize import completion_logprob_gain

HOOK = "blocks.1.hook_resid_pre"


def _data(n: int = 6, seed: int = 0) -> AuditData:
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(4, 50, (int(torch.randint(6, 12, (1,), generator=gen)),), generator=gen)
           for _ in range(n)]  # fmt: skip
    return AuditData(ids, [3] * n, [{"text": ""} for _ in range(n)])


def _edited(kind: str) -> ISaeRFTModel:
    model = ISaeRFTModel(tiny_model(), tiny_sae(hook_name=HOOK), ISaeRFTConfig(component=kind))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def test_shares_add_up_to_the_gain_and_leave_the_model_as_it_was() -> None:
    model, data = _edited("scale_bias"), _data()
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    shares = latent_shares(model, data, steps=32)[HOOK]
    gain = completion_logprob_gain(model, data).mean()
    assert shares.shape == (model.sites[0].sae.cfg.d_sae,)
    # Completeness of integrated gradients (midpoint rule): the shares sum to the gain.
    torch.testing.assert_close(shares.sum(), gain, rtol=0.02, atol=1e-3)
    for name, value in model.trainable_state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.grad is None and p.requires_grad for p in model.trainable_parameters())


def test_an_untouched_latent_gets_nothing() -> None:
    model, data = _edited("scale"), _data()
    with torch.no_grad():
        model.sites[0].component.scale_delta[5] = 0.0
    shares = latent_shares(model, data, steps=2)[HOOK]
    assert float(shares[5]) == 0.0


def test_mlp_components_are_attributed_per_latent() -> None:
    model, data = _edited("mlp"), _data()
    shares = latent_shares(model, data, steps=8)[HOOK]
    assert shares.abs().sum() > 0


def test_contrast_ranks_what_helps_the_suspect_rows_only() -> None:
    suspect = {HOOK: torch.tensor([0.5, 0.1, 0.0, 0.3])}
    ordinary = {HOOK: torch.tensor([0.5, -0.2, 0.0, 0.0])}
    att = EditAttribution(suspect, ordinary, [0], [1])
    assert [(j, round(c, 3)) for _, j, c in att.ranked()] == [(1, 0.3), (3, 0.3)]
    record = att.to_dict()
    assert record["top"][0]["suspect"] == suspect[HOOK][1].item()


def test_ordinary_rows_are_spread_below_the_suspects() -> None:
    order = list(range(100))
    rows = ordinary_rows(order, exclude=10, n=9)
    assert len(rows) == 9 and min(rows) >= 10 and rows == sorted(rows)
    assert ordinary_rows(order[:12], exclude=10, n=9) == [10, 11]
