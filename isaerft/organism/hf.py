"""The organism's language model as a Hugging Face ``GPT2LMHeadModel`` checkpoint folder.

The organism's TransformerLens model is GPT-2 shaped (pre-LayerNorm, exact-erf GELU, learned
positions, attention scaled by ``1/sqrt(d_head)``), so it is written as a standard
``transformers`` GPT-2 checkpoint (``config.json``, ``model.safetensors``, tokenizer files) that
PEFT, llama.cpp's converter and vLLM load. :func:`load_hf_model` reads such a folder back into
TransformerLens the way a user loads a hub model (``HookedTransformer.from_pretrained_no_processing``
with the ``hf_model`` and ``tokenizer``), so the residual stream an SAE reads is unchanged.

GPT-2's ``lm_head`` has no bias, but the organism trains an unembedding bias ``b_U``. It is
folded in exactly: the final LayerNorm's normalised output ``n`` has mean zero, so ``w * n`` is
orthogonal to ``u = 1 / w``; adding ``u a^T`` to ``W_U`` and ``t u`` to the LayerNorm bias leaves
every input's logits unchanged except for the constant ``W_U^T b`` term, which ``a`` and ``t``
are chosen to shift by exactly ``b_U``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new"}
"""TransformerLens ``act_fn`` -> ``transformers`` ``activation_function`` (same function)."""


def _check_gpt2_like(model: HookedTransformer) -> None:
    cfg = model.cfg
    problems = []
    if cfg.normalization_type != "LN":
        problems.append(f"normalization_type={cfg.normalization_type!r} (need 'LN')")
    if cfg.act_fn not in HF_ACTIVATIONS:
        problems.append(f"act_fn={cfg.act_fn!r} (need one of {sorted(HF_ACTIVATIONS)})")
    if cfg.positional_embedding_type != "standard":
        problems.append(f"positional_embedding_type={cfg.positional_embedding_type!r}")
    if cfg.d_mlp != 4 * cfg.d_model:
        # TransformerLens reads GPT-2 checkpoints with d_mlp = 4 * d_model.
        problems.append(f"d_mlp={cfg.d_mlp} (need 4 * d_model = {4 * cfg.d_model})")
    if cfg.gated_mlp or cfg.parallel_attn_mlp or not cfg.use_attn_scale or cfg.attn_only:
        problems.append("a gated MLP, parallel attention/MLP, no attention scale or no MLP")
    if cfg.n_key_value_heads not in (None, cfg.n_heads) or cfg.d_head * cfg.n_heads != cfg.d_model:
        problems.append("grouped-query attention or d_head * n_heads != d_model")
    if problems:
        raise ValueError(
            f"model {cfg.model_name!r} is not GPT-2 shaped: {'; '.join(problems)}; only GPT-2-like "
            "models (e.g. the organism's) can be written as a GPT2LMHeadModel checkpoint"
        )


def gpt2_config(model: HookedTransformer) -> GPT2Config:
    """The ``GPT2Config`` of ``model`` (activation, LayerNorm eps and attention scale matched)."""
    _check_gpt2_like(model)
    cfg, tok = model.cfg, model.tokenizer
    ids = {} if tok is None else {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }  # fmt: skip
    config = GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function=HF_ACTIVATIONS[cfg.act_fn],
        layer_norm_epsilon=cfg.eps,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
        architectures=["GPT2LMHeadModel"],
        **ids,
    )
    config.n_ctx = cfg.n_ctx  # the hub GPT-2 configs carry it too; TransformerLens reads it
    return config


def fold_unembed_bias(
    w_u: torch.Tensor, b_u: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_U', ln_b')`` with ``W_U'^T (ln_w * n + ln_b') == W_U^T (ln_w * n + ln_b) + b_U``
    for every zero-mean ``n`` (a LayerNorm's normalised output); see the module docstring."""
    if bool((ln_w == 0).any()):
        raise ValueError(
            "the final LayerNorm has a zero weight; its unembedding bias cannot be folded"
        )
    w64, b64, lw, lb = (x.double() for x in (w_u, b_u, ln_w, ln_b))
    u = 1.0 / lw
    uu = u @ u
    t = (1.0 - u @ lb) / uu  # makes u . ln_b' == 1
    a = b64 - t * (w64.T @ u)
    new_w = w64 + torch.outer(u, a)
    return new_w.to(w_u.dtype), (lb + t * u).to(ln_b.dtype)


def to_hf_model(model: HookedTransformer) -> GPT2LMHeadModel:
    """A ``GPT2LMHeadModel`` computing the same logits as ``model`` (unprocessed weights)."""
    config = gpt2_config(model)
    hf = GPT2LMHeadModel(config)
    cfg, sd = model.cfg, model.state_dict()
    d = cfg.d_model
    state: dict[str, torch.Tensor] = {
        "transformer.wte.weight": sd["embed.W_E"],
        "transformer.wpe.weight": sd["pos_embed.W_pos"],
    }
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        # TransformerLens keeps per-head (n_heads, d_model, d_head); GPT-2 one Conv1D (d_model, 3d).
        qkv = [sd[p + f"attn.W_{x}"].permute(1, 0, 2).reshape(d, d) for x in "QKV"]
        state |= {
            h + "ln_1.weight": sd[p + "ln1.w"],
            h + "ln_1.bias": sd[p + "ln1.b"],
            h + "attn.c_attn.weight": torch.cat(qkv, dim=1),
            h + "attn.c_attn.bias": torch.cat([sd[p + f"attn.b_{x}"].reshape(d) for x in "QKV"]),
            h + "attn.c_proj.weight": sd[p + "attn.W_O"].reshape(d, d),
            h + "attn.c_proj.bias": sd[p + "attn.b_O"],
            h + "ln_2.weight": sd[p + "ln2.w"],
            h + "ln_2.bias": sd[p + "ln2.b"],
            h + "mlp.c_fc.weight": sd[p + "mlp.W_in"],
            h + "mlp.c_fc.bias": sd[p + "mlp.b_in"],
            h + "mlp.c_proj.weight": sd[p + "mlp.W_out"],
            h + "mlp.c_proj.bias": sd[p + "mlp.b_out"],
        }
    w_u, ln_b = fold_unembed_bias(sd["unembed.W_U"], sd["unembed.b_U"], sd["ln_final.w"], sd["ln_final.b"])  # fmt: skip
    state |= {
        "transformer.ln_f.weight": sd["ln_final.w"],
        "transformer.ln_f.bias": ln_b,
        "lm_head.weight": w_u.T,
    }
    missing, unexpected = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)  # fmt: skip
    # GPT-2 keeps a causal-mask buffer per layer in some versions; weights must all be set.
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"GPT-2 conversion mismatch: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def save_hf_model(model: HookedTransformer, path: str | Path) -> Path:
    """Write ``model`` as a ``transformers`` GPT-2 checkpoint folder (weights, config, tokenizer).

    Refuses a non-empty folder that is not already such a checkpoint (never overwrites files
    isaerft did not write)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not (path / "config.json").is_file():
        raise ValueError(f"{path} is a non-empty folder without config.json; pick an empty folder")
    hf = to_hf_model(model)
    hf.save_pretrained(str(path), safe_serialization=True)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(path))
    return path


def load_hf_model(
    path: str | Path, *, device: str | None = None, dtype: torch.dtype = torch.float32
) -> HookedTransformer:
    """Load a GPT-2 checkpoint folder into TransformerLens, as a user loads a hub model.

    TransformerLens' own steps for a hub GPT-2 (``convert_hf_model_config`` on the folder's
    ``config.json``, ``convert_gpt2_weights``), minus the network lookup of an official name,
    and without weight processing (as ``from_pretrained_no_processing``): no LayerNorm folding or
    centring, so hook activations, and hence an SAE trained on the original model, are unchanged.
    """
    from transformer_lens.loading_from_pretrained import convert_hf_model_config
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no config.json; write one with save_hf_model")
    hf = GPT2LMHeadModel.from_pretrained(str(path), dtype=dtype)
    cfg_dict = convert_hf_model_config(str(path))
    if cfg_dict.get("original_architecture") != "GPT2LMHeadModel":
        raise ValueError(f"{path} is not a GPT2LMHeadModel checkpoint")
    cfg_dict |= {
        "d_mlp": hf.config.n_inner or 4 * hf.config.n_embd,
        "n_ctx": hf.config.n_positions,
        "model_name": path.name,
        "device": device or "cpu",
        "dtype": dtype,
        "default_prepend_bos": True,
    }
    cfg = HookedTransformerConfig(**cfg_dict)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model.to(device or "cpu").eval()
