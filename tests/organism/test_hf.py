"""The organism as a Hugging Face GPT-2 checkpoint: same logits in transformers and TransformerLens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import GPT2LMHeadModel

from isaerft.loading import load_model
from isaerft.organism.corpus import Language
from isaerft.organism.hf import fold_unembed_bias, load_hf_model, save_hf_model, to_hf_model
from isaerft.organism.tokenizer import encode_batch, load_tokenizer

ATOL = 1e-4


def _random_gpt2(act_fn: str, eps: float) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, n_ctx=16, d_vocab=50,
        act_fn=act_fn, normalization_type="LN", eps=eps, seed=0, device="cpu",
    )  # fmt: skip
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():  # a non-zero unembedding bias and LayerNorm params, like a trained LM
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    return model


@pytest.mark.parametrize(("act_fn", "eps"), [("gelu", 1e-5), ("gelu_new", 1e-3)])
def test_random_gpt2_logits_match(act_fn: str, eps: float) -> None:
    model = _random_gpt2(act_fn, eps)
    hf = to_hf_model(model)
    assert hf.config.activation_function == act_fn and hf.config.layer_norm_epsilon == eps
    tokens = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        diff = (model(tokens) - hf(tokens).logits).abs().max().item()
    assert diff < ATOL


def test_fold_unembed_bias_is_exact_on_zero_mean_inputs() -> None:
    gen = torch.Generator().manual_seed(1)
    w_u, b_u = torch.randn(8, 20, generator=gen), torch.randn(20, generator=gen)
    ln_w, ln_b = torch.rand(8, generator=gen) + 0.5, torch.randn(8, generator=gen)
    n = torch.randn(5, 8, generator=gen)
    n = n - n.mean(-1, keepdim=True)
    new_w, new_b = fold_unembed_bias(w_u, b_u, ln_w, ln_b)
    expected = (ln_w * n + ln_b) @ w_u + b_u
    assert torch.allclose((ln_w * n + new_b) @ new_w, expected, atol=1e-5)


def test_non_gpt2_model_is_refused() -> None:
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=64, n_ctx=8, d_vocab=20,
        act_fn="silu", normalization_type="RMS", device="cpu",
    )  # fmt: skip
    with pytest.raises(ValueError, match="not GPT-2 shaped"):
        to_hf_model(HookedTransformer(cfg))


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"without config\.json"):
        save_hf_model(_random_gpt2("gelu", 1e-5), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_organism_checkpoint_matches_on_heldout_text(tiny_organism: Any, tmp_path: Path) -> None:
    org = tiny_organism
    model = load_model(org.model_dir)
    folder = save_hf_model(model, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    hf = GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    reloaded = load_hf_model(folder)
    assert model.tokenizer is not None
    docs = [d.text for d in Language(org.seed).documents(8, "hf-heldout")]
    tokenizer = load_tokenizer(org.model_dir)
    bos, eos = model.tokenizer.bos_token_id, model.tokenizer.eos_token_id
    hook = org.hook_name
    with torch.no_grad():
        for ids in encode_batch(tokenizer, docs):
            tokens = torch.tensor([[bos, *ids[: model.cfg.n_ctx - 2], eos]])
            logits, cache = model.run_with_cache(tokens, names_filter=hook)
            assert isinstance(logits, torch.Tensor)
            assert (hf(tokens).logits - logits).abs().max().item() < ATOL
            logits2, cache2 = reloaded.run_with_cache(tokens, names_filter=hook)
            assert isinstance(logits2, torch.Tensor)
            assert (logits2 - logits).abs().max().item() < ATOL
            # The SAE's site sees the same activations: the organism's SAE works on the reload.
            assert (cache2[hook] - cache[hook]).abs().max().item() < ATOL


def test_load_model_takes_a_hugging_face_checkpoint_folder(tiny_organism, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from isaerft.loading import load_model
    from isaerft.organism.hf import save_hf_model

    model = tiny_organism.load_model("cpu")
    folder = save_hf_model(model, tmp_path / "hf")
    loaded = load_model(folder)
    tokens = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(loaded(tokens), model(tokens), atol=1e-4)
