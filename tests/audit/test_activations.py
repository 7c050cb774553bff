"""SAE codes of audited rows: equal to a dense encode, and with ``edited`` the tuned view."""

from __future__ import annotations

import torch
from audit.helpers import HOOK
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTModel
from isaerft.audit.activations import collect_codes, hook_layer
from isaerft.audit.data import AuditData


def data(n_rows: int = 5) -> AuditData:
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 50, (int(n),), generator=gen) for n in torch.randint(3, 12, (n_rows,))]
    return AuditData(ids, [1] * n_rows, [{"text": ""}] * n_rows)


def test_codes_match_a_dense_encode() -> None:
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    rows = data()
    codes = collect_codes(model, [sae], rows, batch_size=2)[HOOK]
    assert codes.n_rows == 5 and codes.n_tokens == sum(len(x) for x in rows.ids)
    for r, seq in enumerate(rows.ids):
        _, cache = model.run_with_cache(seq[None], names_filter=HOOK)
        dense = sae.encode(cache[HOOK][0])
        mine = torch.zeros_like(dense)
        in_row = codes.token_row[codes.tok] == r
        mine[codes.token_pos[codes.tok[in_row]], codes.lat[in_row]] = codes.val[in_row]
        torch.testing.assert_close(mine, dense, atol=1e-5, rtol=1e-4)
    freq = codes.firing_frequency()
    assert freq.shape == (sae.cfg.d_sae,) and 0 < float(freq.max()) <= 1
    summed = codes.row_reduce(list(range(sae.cfg.d_sae)), "sum")
    assert float(summed.sum()) == float(codes.val.double().sum())
    ids = codes.token_ids(rows)  # per token, the id at its (row, position)
    assert ids.tolist() == [int(rows.ids[r][p]) for r, p in zip(codes.token_row, codes.token_pos)]


def test_edited_codes_see_the_edit() -> None:
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    wrapped = ISaeRFTModel(model, sae)
    rows = data(3)
    base = collect_codes(wrapped, [sae], rows)[HOOK]
    same = collect_codes(wrapped, [sae], rows, edited=True)[HOOK]
    torch.testing.assert_close(same.val, base.val)  # identity at init
    with torch.no_grad():
        wrapped.sites[0].component.scale_delta.fill_(1.0)  # doubles every latent
    doubled = collect_codes(wrapped, [sae], rows, edited=True)[HOOK]
    assert float(doubled.val.sum()) > 1.5 * float(base.val.sum())
    assert hook_layer("blocks.12.hook_resid_post") == 12 and hook_layer("hook_embed") is None
