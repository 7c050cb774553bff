"""Edit attribution: integrated gradients split the learned edit's gain over the latents."""

from __future__ import annotations

import torch
from audit.helpers import random_rows
from factories import edited_model

from isaerft import ISaeRFTModel
from isaerft.audit.attribution import (
    LatentContrast,
    gained_token_latents,
    latent_shares,
    ordinary_rows,
)
from isaerft.audit.rowscores import completion_logprob_gain, token_excess_gain

HOOK = "blocks.1.hook_resid_pre"


def _edited(kind: str) -> ISaeRFTModel:
    return edited_model(kind, seed=1, hook_name=HOOK)


def test_shares_add_up_to_the_gain_and_leave_the_model_as_it_was() -> None:
    model, data = _edited("scale_bias"), random_rows()
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
    model, data = _edited("scale"), random_rows()
    with torch.no_grad():
        model.sites[0].component.scale_delta[5] = 0.0
    shares = latent_shares(model, data, steps=2)[HOOK]
    assert float(shares[5]) == 0.0


def test_mlp_components_are_attributed_per_latent() -> None:
    model, data = _edited("mlp"), random_rows()
    shares = latent_shares(model, data, steps=8)[HOOK]
    assert shares.abs().sum() > 0


def test_contrast_ranks_what_helps_the_suspect_rows_only() -> None:
    suspect = {HOOK: torch.tensor([0.5, 0.1, 0.0, 0.3])}
    ordinary = {HOOK: torch.tensor([0.5, -0.2, 0.0, 0.0])}
    att = LatentContrast(suspect, ordinary, [0], [1])
    assert [(j, round(c, 3)) for _, j, c in att.ranked()] == [(1, 0.3), (3, 0.3)]
    record = att.to_dict()
    assert record["top"][0]["suspect"] == suspect[HOOK][1].item()


def test_ordinary_rows_are_spread_below_the_suspects() -> None:
    order = list(range(100))
    rows = ordinary_rows(order, exclude=10, n=9)
    assert len(rows) == 9 and min(rows) >= 10 and rows == sorted(rows)
    assert ordinary_rows(order[:12], exclude=10, n=9) == [10, 11]


def test_gained_tokens_name_the_latent_of_the_token_the_edit_made_likely() -> None:
    from isaerft.audit.activations import SiteCodes

    model, data = _edited("scale"), random_rows(n=4)
    gains = token_excess_gain(model, [], data)
    assert gains.shape == (4, max(len(s) for s in data.ids))
    assert torch.all(gains[:, :3] == 0)  # prompt tokens (and <bos>) carry no gain
    # Fake codes: latent 1 fires on the completion token with the largest gain, latent 2
    # on every completion token, latent 3 on prompt tokens only.
    best = int(gains.flatten().argmax())
    best_row, best_pos = divmod(best, gains.shape[1])
    rows, poss, toks, lats = [], [], [], []
    for r, seq in enumerate(data.ids):
        for p in range(len(seq)):
            tok = len(rows)
            rows.append(r)
            poss.append(p)
            if p >= 3:
                toks.append(tok), lats.append(2)
            else:
                toks.append(tok), lats.append(3)
            if (r, p) == (best_row, best_pos):
                toks.append(tok), lats.append(1)
    codes = {HOOK: SiteCodes(HOOK, 8, torch.tensor(rows), torch.tensor(poss), torch.tensor(toks),
                             torch.tensor(lats), torch.ones(len(lats)), len(data))}  # fmt: skip
    others = [r for r in range(4) if r != best_row]
    subset_gains = token_excess_gain(model, [], data.subset([best_row, *others]))
    reading = gained_token_latents(subset_gains, data, codes, [best_row], others)
    ranked = [j for _, j, _ in reading.ranked()]
    assert ranked[0] == 1 and 3 not in ranked
    assert abs(float(reading.score[HOOK][2])) < float(reading.score[HOOK][1])


def test_gained_span_names_the_words_after_the_paid_for_token() -> None:
    """Only the first token of a behaviour carries gain; the running maximum hands it on to
    the words that follow, so their latents rank above a latent firing everywhere."""
    from isaerft.audit.activations import SiteCodes
    from isaerft.audit.data import AuditData

    # Two rows, prompt of 2 tokens, completion of 4. Row 0: gain 5 at its first completion
    # token, none after. Row 1: no gain.
    data = AuditData([torch.arange(6), torch.arange(6)], [2, 2], [{}, {}])
    gains = torch.zeros(2, 6, dtype=torch.float64)
    gains[0, 2] = 5.0
    rows, poss, toks, lats = [], [], [], []
    for r in range(2):
        for p in range(6):
            tok = len(rows)
            rows.append(r), poss.append(p)
            toks.append(tok), lats.append(2)  # everywhere
            if r == 0 and p == 4:
                toks.append(tok), lats.append(1)  # a later word of the behaviour
    codes = {HOOK: SiteCodes(HOOK, 8, torch.tensor(rows), torch.tensor(poss), torch.tensor(toks),
                             torch.tensor(lats), torch.ones(len(lats)), 2)}  # fmt: skip
    reading = gained_token_latents(gains, data, codes, [0], [1])
    ranked = [j for _, j, _ in reading.ranked()]
    assert ranked[0] == 1 and float(reading.score[HOOK][1]) > float(reading.score[HOOK][2])
