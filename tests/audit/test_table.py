"""The per-latent table: decoder-space impact, effective contribution, context windows."""

from __future__ import annotations

import torch
from audit.helpers import HOOK, word_tokenizer
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTModel
from isaerft.audit.activations import collect_codes
from isaerft.audit.data import tokenize_rows
from isaerft.audit.runs import RunEdits
from isaerft.audit.table import build_table, decoder_norms, split_window


def test_table_columns_follow_their_formulas() -> None:
    model = tiny_model()
    model.tokenizer = word_tokenizer()
    sae = tiny_sae(hook_name=HOOK)
    wrapped = ISaeRFTModel(model, sae)
    rows = [
        {"prompt": "User: tell me about the cat ?\nAssistant:", "completion": " the cat is red ."}
    ]
    data = tokenize_rows(rows * 3, model.tokenizer, 32)
    codes = collect_codes(model, [sae], data)
    often, rarely = codes[HOOK].firing_frequency().argsort(descending=True)[:2].tolist()
    with torch.no_grad():
        wrapped.sites[0].component.scale_delta[often] = 0.5
        wrapped.sites[0].component.scale_delta[rarely] = -0.2
    run = RunEdits.from_model(wrapped)
    table = build_table(run, [sae], codes=codes, components={HOOK: wrapped.sites[0].component},
                        data=data, tokenizer=model.tokenizer, top=2)  # fmt: skip
    assert [r.index for r in table] == [often, rarely]  # no null: ranked by impact
    norms = decoder_norms(sae)
    top = table[0]
    assert top.impact == torch.tensor(0.5 * float(norms[often])).item()
    mean = float(codes[HOOK].mean_activation()[often])
    assert abs(top.effective_contribution - 0.5 * mean * float(norms[often])) < 1e-6
    assert top.firing_frequency > 0 and top.edits == {"scale": 0.5}
    best = max(top.contexts, key=lambda c: c.activation)
    assert best.activation == float(codes[HOOK].token_values(often)[1].max())


def test_split_window_keeps_tokenizer_spacing() -> None:
    tok = word_tokenizer()
    ids = tok("the cat is red", add_special_tokens=False)["input_ids"]
    left, token, right = split_window(tok, ids, 1)
    assert left + token + right == tok.decode(ids)
    assert token.strip() == "cat"
