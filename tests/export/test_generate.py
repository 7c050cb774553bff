"""``compare_generations``: three continuations from one seed."""

from __future__ import annotations

import pytest
import torch

from isaerft.export import compare_generations


def test_needs_a_tokenizer(make_model):
    with pytest.raises(ValueError, match="tokenizer"):
        compare_generations(make_model("bias"), "hello")


def test_organism_continuations(tiny_organism):
    org = tiny_organism
    from isaerft import ISaeRFTConfig, ISaeRFTModel
    from isaerft.export import vectors_from_model

    model = ISaeRFTModel(org.load_model(), org.load_sae(), ISaeRFTConfig(component="bias"))
    site = model.sites[0]
    with torch.no_grad():
        site.component.bias.fill_(0.0)
    vectors = vectors_from_model(model)
    out = compare_generations(model, "User: hello\nAssistant:", vectors=vectors, max_new_tokens=6)
    assert set(out) == {"base", "isaerft", "steered"}
    # A zero edit leaves all three identical (same seed, greedy decoding).
    assert out["base"] == out["isaerft"] == out["steered"]
    sampled = compare_generations(model, "User: hi\nAssistant:", temperature=1.0, seed=3)
    assert set(sampled) == {"base", "isaerft"} and sampled["base"] == sampled["isaerft"]
