"""Tiny random models and SAEs of every supported architecture, built in-process (no downloads)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes import (
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from isaerft.components import LatentComponent

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "gated", "matryoshka")
D_MODEL = 32


def tiny_model(
    dtype: torch.dtype = torch.float32, n_layers: int = 3, seed: int = 0
) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=D_MODEL,
        n_ctx=32,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=50,
        act_fn="gelu",
        normalization_type="LN",
        dtype=dtype,
        seed=seed,
        device="cpu",  # TransformerLens picks cuda when it sees one; the tiny SAEs are on the CPU
    )
    return HookedTransformer(cfg).eval()


def _randomise(sae: SAE[Any], seed: int) -> SAE[Any]:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32) * 0.2
            if name == "threshold":
                noise = noise.abs() * 0.1
            param.copy_(noise.to(param.dtype))
    return sae


def tiny_sae(
    architecture: str = "standard",
    hook_name: str = "blocks.1.hook_resid_post",
    d_in: int = D_MODEL,
    d_sae: int = 4 * D_MODEL,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    **cfg_kwargs: Any,
) -> SAE[Any]:
    """An SAE with random weights; batchtopk and matryoshka go through SAELens' own conversion
    from their training class to the inference SAE they save as."""
    common: dict[str, Any] = {"d_in": d_in, "d_sae": d_sae, **cfg_kwargs}
    sae: SAE[Any]
    if architecture == "standard":
        sae = StandardSAE(StandardSAEConfig(**common))
    elif architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(k=8, **common))
    elif architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(**common))
    elif architecture == "gated":
        sae = GatedSAE(GatedSAEConfig(**common))
    elif architecture in ("batchtopk", "matryoshka"):
        if architecture == "batchtopk":
            train = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(k=8, **common))
        else:
            cfg = MatryoshkaBatchTopKTrainingSAEConfig(
                k=8, matryoshka_widths=[d_sae // 4, d_sae // 2, d_sae], **common
            )
            train = MatryoshkaBatchTopKTrainingSAE(cfg)
        _randomise(train, seed)
        with torch.no_grad():
            train.topk_threshold.fill_(0.05)  # type: ignore[operator]
        with tempfile.TemporaryDirectory() as tmp:
            train.save_inference_model(tmp)
            sae = SAE.load_from_disk(tmp)
    else:
        raise ValueError(architecture)
    if architecture not in ("batchtopk", "matryoshka"):
        _randomise(sae, seed)
    sae.cfg.metadata.hook_name = hook_name
    sae.cfg.metadata.model_name = "tiny"
    return sae.to(dtype=dtype).eval()


def edited_model(
    kind: str = "scale", seed: int = 1, hook_name: str = "blocks.1.hook_resid_pre"
) -> Any:
    """An ISaeRFT model on :func:`tiny_model` and :func:`tiny_sae` whose trainable parameters
    are random (``0.3`` standard normal), so its edit changes the model's outputs."""
    from isaerft import ISaeRFTConfig, ISaeRFTModel

    model = ISaeRFTModel(tiny_model(), tiny_sae(hook_name=hook_name), ISaeRFTConfig(component=kind))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` (ids 0..3 are pad, bos, eos, unk)."""
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace("\n", " ⏎ ")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
    )


def word_rows(tok: PreTrainedTokenizerFast, pairs: Sequence[tuple[str, str]]) -> Any:
    """``AuditData`` of ``(prompt, answer)`` pairs of space-separated words of ``tok``
    (:func:`word_tokenizer`), each prompt after ``<bos>``."""
    from isaerft.audit.data import AuditData

    ids, prompt_lengths = [], []
    for prompt, answer in pairs:
        head = tok.convert_tokens_to_ids(["<bos>", *prompt.split()])
        ids.append(torch.tensor(head + tok.convert_tokens_to_ids(answer.split())))
        prompt_lengths.append(len(head))
    return AuditData(ids, prompt_lengths, [{} for _ in ids])


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models train faster on one thread when the cores are shared; a conftest that
    imports this fixture applies it to its folder's tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def micro_corpus_organism(text: Any, out: Any) -> Any:
    """A corpus organism small enough for a test (seconds): one GPT-2-shaped layer (d_mlp =
    4 x d_model, so the HF export works too) and a tiny SAE, built from the text file ``text``
    into ``out``."""
    import dataclasses

    from isaerft.organism import build_organism
    from isaerft.organism.build import ORGANISM_PRESETS
    from isaerft.organism.sae import OrganismSAEConfig

    tiny = ORGANISM_PRESETS["tiny"]
    config = dataclasses.replace(
        tiny,
        lm=dataclasses.replace(tiny.lm, n_layers=1, d_model=32, d_mlp=128, steps=30),
        sae=OrganismSAEConfig(
            layer=0, hook="hook_resid_post", expansion=4, k=4, steps=40, batch_size=256
        ),
        n_sae_docs=300,
        n_eval_docs=200,
        max_vocab=800,
    )
    return build_organism("tiny", out=out, corpus=text, progress=False, config=config)


def fit_latent_delta(
    component: LatentComponent, f: torch.Tensor, target: torch.Tensor, steps: int = 300
) -> float:
    """Adam on ``component`` alone until its ``latent_delta(f)`` matches ``target``; the final
    mean squared error (for tests that a kind can express a rule)."""
    optim = torch.optim.Adam(component.parameters(), lr=0.05)
    for _ in range(steps):
        optim.zero_grad()
        loss = (component.latent_delta(f) - target).pow(2).mean()
        loss.backward()
        optim.step()
    return float(loss.item())
