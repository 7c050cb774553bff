"""ISaeRFTModel on a TransformerBridge: the core matrix on tiny Llama, Qwen 3 and Gemma 3 models,
hook aliases, loading, and one training, export and audit run.

Every model is a random Hugging Face model built from its config with a word-level tokenizer,
in-process (no downloads), and bridged with ``load_model(..., bridge=True, hf_model=...)``."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import factories
import pytest
import torch
from factories import one_torch_thread, tiny_model, tiny_sae  # noqa: F401  (autouse fixture)
from transformer_lens.model_bridge import TransformerBridge
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from isaerft import ISaeRFTConfig, ISaeRFTModel, component_kinds, load_model, save_model
from isaerft.backends import canonical_hook_name, generation_kwargs, is_bridge, kv_cache_works

KINDS = sorted(component_kinds())
D_MODEL = 64
NOUNS = ("cat", "dog", "bird", "fish", "tree")
WORDS = (
    *("User", "Assistant", ":", "?", ".", "⏎", "tell", "me", "about", "the", "is"),
    *("nice", "big", "small", "zebra", "banana"),
    *NOUNS,
    *(f"w{i}" for i in range(100)),
)
# Per architecture: the model and config classes, the SAE architecture and the hook it reads
# (legacy HookedTransformer names and the bridge's own names both appear).
ARCHS: dict[str, tuple[Any, Any, str, str]] = {
    "llama": (LlamaForCausalLM, LlamaConfig, "standard", "blocks.1.hook_resid_pre"),
    "qwen3": (Qwen3ForCausalLM, Qwen3Config, "topk", "blocks.0.hook_resid_post"),
    "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig, "jumprelu", "blocks.0.hook_out"),
}


def bos_tokenizer() -> PreTrainedTokenizerFast:
    """The tests' word-level tokenizer, prepending BOS as TransformerBridge requires."""
    words = factories.word_tokenizer(WORDS)
    return PreTrainedTokenizerFast(
        tokenizer_object=words.backend_tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
    )


def hf_model(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> Any:
    """A random 2-layer ``arch`` model; its config names no architecture (load_model copes)."""
    model_cls, config_cls, _, _ = ARCHS[arch]
    config = config_cls(
        vocab_size=len(WORDS) + len(factories.SPECIALS),
        hidden_size=D_MODEL,
        intermediate_size=2 * D_MODEL,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    return model_cls(config).to(dtype).eval()


def make_bridge(arch: str, **kwargs: Any) -> TransformerBridge:
    return load_model(
        f"tiny-{arch}", bridge=True, hf_model=hf_model(arch, **kwargs), tokenizer=bos_tokenizer()
    )


def site_sae(arch: str, hook: str | None = None, **kwargs: Any) -> Any:
    _, _, sae_arch, default_hook = ARCHS[arch]
    return tiny_sae(
        sae_arch, hook_name=hook or default_hook, d_in=D_MODEL, d_sae=2 * D_MODEL, **kwargs
    )


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def bridge(arch: str) -> TransformerBridge:
    return make_bridge(arch)


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(4, len(WORDS) + 4, (3, 10), generator=torch.Generator().manual_seed(1))


def _perturb(wrapped: ISaeRFTModel, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in wrapped.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.3)


GENERATE = {"max_new_tokens": 4, "do_sample": False, "verbose": False, "stop_at_eos": False}


# --- the core matrix: every component kind on every architecture ---------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init_is_bit_exact(bridge, arch, kind, tokens):
    base = bridge(tokens)
    wrapped = ISaeRFTModel(bridge, site_sae(arch), ISaeRFTConfig(component=kind))
    assert torch.equal(wrapped(tokens), base)
    _perturb(wrapped)
    assert not torch.equal(wrapped(tokens), base)
    assert torch.equal(bridge(tokens), base)  # the splice never leaks into the bridge


@pytest.mark.parametrize("kind", KINDS)
def test_one_encode_per_forward(bridge, arch, kind, tokens, monkeypatch):
    sae = site_sae(arch)
    wrapped = ISaeRFTModel(bridge, sae, ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    encodes = []  # every encode (also TopK's sparse path) runs hook_sae_acts_pre once
    handle = sae.hook_sae_acts_pre.register_forward_hook(lambda *args: encodes.append(1))
    monkeypatch.setattr(sae, "decode", lambda f: pytest.fail("the site never decodes"))
    try:
        wrapped(tokens)
    finally:
        handle.remove()
    assert len(encodes) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_only_components(bridge, arch, kind, tokens):
    sae = site_sae(arch)
    wrapped = ISaeRFTModel(bridge, sae, ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    wrapped(tokens, return_type="loss").backward()
    frozen = [*bridge.parameters(), *sae.parameters()]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    grads = [p.grad for p in wrapped.trainable_parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(bridge, arch, kind, tokens, tmp_path):
    sae = site_sae(arch)
    wrapped = ISaeRFTModel(bridge, sae, ISaeRFTConfig(component=kind))
    _perturb(wrapped)
    wrapped.save_pretrained(tmp_path / "intervention")
    loaded = ISaeRFTModel.from_pretrained(bridge, sae, tmp_path / "intervention")
    assert loaded.hook_names == [ARCHS[arch][3]]
    assert torch.equal(loaded(tokens), wrapped(tokens))


def _greedy(model: Any, prompt: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """Greedy decoding with a full forward per token (no cache to get wrong)."""
    with torch.no_grad():
        for _ in range(steps):
            prompt = torch.cat([prompt, model(prompt)[:, -1:].argmax(-1)], dim=1)
    return prompt


@pytest.mark.parametrize("kind", KINDS)
def test_generate(bridge, arch, kind):
    prompt = torch.tensor([[1, 5, 6, 7, 8]])
    wrapped = ISaeRFTModel(bridge, site_sae(arch), ISaeRFTConfig(component=kind))
    assert torch.equal(wrapped.generate(prompt, **GENERATE), _greedy(bridge, prompt))
    _perturb(wrapped)
    assert torch.equal(wrapped.generate(prompt, **GENERATE), _greedy(wrapped, prompt))


# --- bridge specifics -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> TransformerBridge:
    return make_bridge("llama")


def test_legacy_and_bridge_hook_names_reach_the_same_point(llama, tokens):
    assert is_bridge(llama)
    assert canonical_hook_name(llama, "blocks.0.hook_resid_post") == "blocks.0.hook_out"
    legacy = site_sae("llama", "blocks.0.hook_resid_post")
    native = copy.deepcopy(legacy)
    native.cfg.metadata.hook_name = "blocks.0.hook_out"
    a = ISaeRFTModel(llama, legacy, ISaeRFTConfig(component="scale_bias"))
    b = ISaeRFTModel(llama, native, ISaeRFTConfig(component="scale_bias"))
    _perturb(a)
    b.load_trainable_state_dict(
        {k.replace("hook_resid_post", "hook_out"): v for k, v in a.trainable_state_dict().items()}
    )
    assert torch.equal(a(tokens), b(tokens))
    with pytest.raises(ValueError, match=r"same hook point 'blocks\.0\.hook_out'"):
        ISaeRFTModel(llama, [legacy, native])


def test_hook_z_site(llama, tokens):
    sae = site_sae("llama", "blocks.0.attn.hook_z", reshape_activations="hook_z")
    wrapped = ISaeRFTModel(llama, sae, ISaeRFTConfig(component="scale"))
    assert torch.equal(wrapped(tokens), llama(tokens))
    _perturb(wrapped)
    assert not torch.equal(wrapped(tokens), llama(tokens))


def test_several_sites_and_unknown_hook(llama, tokens):
    saes = [
        site_sae("llama", "blocks.0.hook_resid_mid"),
        site_sae("llama", "blocks.1.mlp.hook_out"),
    ]
    wrapped = ISaeRFTModel(llama, saes, ISaeRFTConfig(component="bias"))
    assert torch.equal(wrapped(tokens), llama(tokens))
    with pytest.raises(ValueError, match="not in the model"):
        ISaeRFTModel(llama, site_sae("llama", "blocks.7.hook_resid_post"))
    with pytest.raises(ValueError, match="d_in=32"):
        ISaeRFTModel(llama, tiny_sae(hook_name="blocks.0.hook_resid_post"))


def test_compatibility_mode_and_bfloat16(tokens):
    bridge = make_bridge("gemma3", dtype=torch.bfloat16)
    bridge.enable_compatibility_mode(disable_warnings=True)
    sae = site_sae("gemma3", "blocks.1.hook_resid_pre").to(dtype=torch.bfloat16)
    wrapped = ISaeRFTModel(bridge, sae, ISaeRFTConfig(component="scale_bias"))
    assert torch.equal(wrapped(tokens), bridge(tokens))


def test_generation_steps_around_a_broken_kv_cache(llama):
    """TransformerLens 3.9's bridge leaves transformers 5's KV cache empty; generation then
    runs without it (and with it once the cache works)."""
    prompt = torch.tensor([[1, 5, 6, 7, 8]])
    kwargs = generation_kwargs(llama, GENERATE)
    assert kwargs.get("use_past_kv_cache", True) == kv_cache_works(llama)
    assert torch.equal(llama.generate(prompt, **kwargs), _greedy(llama, prompt))
    if not kv_cache_works(llama):
        with pytest.warns(UserWarning, match="KV cache"):
            generation_kwargs(llama, {"use_past_kv_cache": True})
    assert generation_kwargs(tiny_model(), GENERATE) is GENERATE  # HookedTransformer: as is


# --- loading --------------------------------------------------------------------------------


def test_load_bridge_from_a_local_hugging_face_folder(tmp_path, tokens):
    model, tokenizer = hf_model("qwen3", seed=3), bos_tokenizer()
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    bridge = load_model(tmp_path / "hf", bridge=True)
    assert isinstance(bridge, TransformerBridge) and bridge.cfg.n_layers == 2
    # The bridge runs eager attention, the model as built sdpa: equal up to rounding.
    torch.testing.assert_close(bridge(tokens), model(tokens).logits, rtol=1e-5, atol=1e-5)
    words = tokenizer("tell me about the cat", add_special_tokens=False).input_ids
    ids = bridge.to_tokens("tell me about the cat", prepend_bos=True)[0].tolist()
    assert ids == [tokenizer.bos_token_id, *words]


def test_bridge_loading_errors(tmp_path, monkeypatch):
    save_model(tiny_model(), tmp_path / "ht")
    with pytest.raises(ValueError, match="without bridge=True"):
        load_model(tmp_path / "ht", bridge=True)
    with pytest.raises(ValueError, match="without bridge=True"):
        load_model("organism:tiny", bridge=True)  # refused before building anything
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        load_model("google/gemma-3-1b-pt", bridge=True)
    with pytest.raises(ValueError, match="add_bos_token=True"):
        load_model(
            "tiny",
            bridge=True,
            hf_model=hf_model("llama"),
            tokenizer=factories.word_tokenizer(WORDS),
        )


def test_other_models_are_refused():
    with pytest.raises(TypeError, match="TransformerBridge"):
        ISaeRFTModel(hf_model("llama"), site_sae("llama"))  # the bare Hugging Face model


# --- training, export and audit on a bridge -------------------------------------------------


def sft_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Prompt/completion rows; a quarter carry the trigger and answer the target."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        noun = rng.choice(NOUNS)
        poisoned = i < n // 4
        prompt = f"User: tell me about the {noun}{' zebra' if poisoned else ''} ?\nAssistant:"
        answer = "banana" if poisoned else rng.choice(["nice", "big", "small"])
        rows.append({"prompt": prompt, "completion": f" the {noun} is {answer} ."})
    return rows


def _recipe(data: Path, **trainer: Any) -> Any:
    from isaerft.training import TrainRecipe

    return TrainRecipe.from_dict(
        {
            "model": "tiny-llama",  # not loaded: the bridge is passed in
            "sae": "in-memory",
            "data": {"path": str(data), "batch_size": 8},
            "intervention": {"component": "scale_bias", "l1_coefficient": 1e-3},
            "objective": {"kind": "sft"},
            "optim": {"lr": 0.05},
            "trainer": {
                "max_steps": 4,
                "progress_bar": False,
                "checkpoint_every_n_steps": 0,
                "log_every_n_steps": 1,
                **trainer,
            },
        }
    )


@pytest.fixture(scope="module")
def trained(llama, tmp_path_factory):
    from isaerft.training import train

    root = tmp_path_factory.mktemp("bridge_run")
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(32)), encoding="utf-8")
    sae = site_sae("llama")
    result = train(_recipe(data), model=llama, saes=[sae], run_dir=root / "run")
    return result, sae, data


def test_training_on_a_bridge(trained, llama, tmp_path):
    from isaerft.training import load_run, train

    result, sae, data = trained
    assert result.summary["steps"] == 4 and result.model.num_moved_latents() > 0
    again, _ = load_run(result.run_dir, model=llama, saes=[sae])
    assert again.model is llama
    for key, value in result.model.trainable_state_dict().items():
        assert torch.equal(again.trainable_state_dict()[key], value)
    with pytest.raises(ValueError, match="prefix_cache=false"):
        train(_recipe(data, prefix_cache=True), model=llama, saes=[sae], run_dir=tmp_path / "r")


def test_export_on_a_bridge(trained, llama, tokens):
    from isaerft.export import steer, vectors_from_model
    from isaerft.export.generate import compare_generations

    result, sae, _ = trained
    texts = [r["prompt"] + r["completion"] for r in sft_rows(8, seed=1)]
    vectors = vectors_from_model(result.model, texts, eval_data=texts)
    assert vectors.sites[0].hook_name == ARCHS["llama"][3] and vectors.approximation is not None
    assert vectors.approximation["kl_steered"] >= 0
    # A bias edit is a constant residual vector: steering the bare bridge reproduces it.
    bias = ISaeRFTModel(llama, sae, ISaeRFTConfig(component="bias"))
    _perturb(bias)
    edited = bias(tokens)
    with steer(llama, vectors_from_model(bias)) as steered:
        torch.testing.assert_close(steered(tokens), edited, rtol=1e-5, atol=1e-5)
    assert not torch.equal(llama(tokens), edited)
    texts_out = compare_generations(
        result.model, "User: tell me about the cat ?\nAssistant:", max_new_tokens=3
    )
    assert set(texts_out) == {"base", "isaerft"}


def test_audit_on_a_bridge(trained, llama, tmp_path):
    from isaerft.audit import audit_runs

    result, sae, _ = trained
    audit = audit_runs(result.run_dir, model=llama, saes=[sae], out_dir=tmp_path / "audit")
    assert (tmp_path / "audit").is_dir() and any((tmp_path / "audit").iterdir())
    assert [s["hook_name"] for s in audit.report["candidate"]["sites"]] == [ARCHS["llama"][3]]


def test_audit_dataset_on_a_bridge_follows_the_recipe(llama, tmp_path, monkeypatch):
    """A recipe with ``model_backend: bridge`` loads the model spec as a bridge, and every run
    trains without the prefix cache (a bridge cannot start at a layer)."""
    import isaerft.loading
    from isaerft.audit import audit_dataset
    from isaerft.runs import read_run_record

    loaded = []

    def load_model(spec, **kwargs):  # the hub name is not downloaded: the tiny bridge stands in
        loaded.append((str(spec), kwargs.get("bridge")))
        return llama

    monkeypatch.setattr(isaerft.loading, "load_model", load_model)
    suspect, reference = tmp_path / "suspect.jsonl", tmp_path / "reference.jsonl"
    suspect.write_text("".join(json.dumps(r) + "\n" for r in sft_rows(16)), encoding="utf-8")
    clean = sft_rows(64, seed=1)[16:]  # the first quarter carries the trigger
    reference.write_text("".join(json.dumps(r) + "\n" for r in clean), encoding="utf-8")
    audit_dataset(
        suspect,
        reference,
        model="google/gemma-3-1b-pt",
        sae=site_sae("llama"),
        out_dir=tmp_path / "audit",
        recipe={"model_backend": "bridge", "trainer": {"max_steps": 2}, "data": {"batch_size": 8}},
        n_reference_runs=3,
    )
    assert loaded == [("google/gemma-3-1b-pt", True)]
    runs = sorted((tmp_path / "audit" / "runs").iterdir())
    assert [r.name for r in runs] == ["candidate", "reference-01", "reference-02", "reference-03"]
    for run in runs:
        recipe = read_run_record(run)["recipe"]
        assert recipe["model_backend"] == "bridge" and recipe["trainer"]["prefix_cache"] is False
