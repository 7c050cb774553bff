"""``isaerft export --format lm-eval``: the file lm-evaluation-harness' ``steered`` model reads.

The end-to-end test loads the exported file with lm-eval's own ``SteeredModel`` (its loader and
its forward hooks) on the organism's Hugging Face GPT-2 checkpoint and checks its logits against
the ISaeRFT model's and against isaerft's ``steer``. Tests that need lm-eval skip without it
(``pip install 'isaerft[interop]'``); the refusals need nothing extra.
"""

from __future__ import annotations

from importlib.util import find_spec

import pytest
import torch
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTConfig, ISaeRFTModel, save_model
from isaerft.cli import main
from isaerft.export import load_vectors, steer, vectors_from_model
from isaerft.export.formats import WriteOptions, format_of_file, get_format
from isaerft.export.lm_eval import (
    DECODER_LAYERS,
    ENTRY_KEYS,
    decoder_layers_module,
    hf_architecture,
    lm_eval_hookpoint,
    read_lm_eval,
    save_lm_eval,
)

needs_lm_eval = pytest.mark.skipif(
    find_spec("lm_eval") is None,
    reason="lm_eval is not installed (pip install 'isaerft[interop]')",
)

ATOL = 1e-4


def _randomise(model: ISaeRFTModel, seed: int = 0, scale: float = 0.5) -> ISaeRFTModel:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
    return model


def _one_line_refusal(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    return err


# ---- what is written, and what is refused (no lm-eval needed) ----------------------------------


def test_file_is_exactly_lm_evals_format_and_loads_without_pickle(make_model, tmp_path):
    model = make_model("bias", hooks=("blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"))
    vectors = vectors_from_model(model)
    path = save_lm_eval(vectors, tmp_path / "steer.pt", architecture="GPT2LMHeadModel")
    config = torch.load(path, weights_only=True)
    # blocks.2.hook_resid_pre is block 1's output: both sites land on h.1 and are summed.
    assert list(config) == ["h.1"]
    entry = config["h.1"]
    assert tuple(entry) == ENTRY_KEYS
    assert entry["action"] == "add" and entry["steering_coefficient"] == 1.0
    assert entry["bias"] is None and entry["head_index"] is None
    expected = (
        vectors["blocks.1.hook_resid_post"].vector + vectors["blocks.2.hook_resid_pre"].vector
    )
    torch.testing.assert_close(entry["steering_vector"], expected)
    assert read_lm_eval(path).keys() == config.keys()
    # Read back through the format table: the same block output, in TransformerLens' name.
    assert format_of_file(path).name == "lm-eval"
    torch.testing.assert_close(load_vectors(path), {"blocks.1.hook_resid_post": expected})


def test_a_scale_run_exports_its_data_mean_like_every_format(make_model, tokens, tmp_path):
    vectors = vectors_from_model(make_model("scale"), tokens)
    assert vectors.sites[0].kind == "data_mean"
    path = save_lm_eval(vectors, tmp_path / "steer.pt", architecture="GPT2LMHeadModel")
    torch.testing.assert_close(load_vectors(path), vectors.as_dict())


@pytest.mark.parametrize(
    ("architecture", "hookpoint"),
    [("GPT2LMHeadModel", "h.1"), ("LlamaForCausalLM", "layers.1"), ("OPTForCausalLM", "decoder.layers.1")],
)  # fmt: skip
def test_hookpoints_follow_the_architecture(make_model, tmp_path, architecture, hookpoint):
    vectors = vectors_from_model(make_model("bias"))
    path = save_lm_eval(vectors, tmp_path / "s.pth", architecture=architecture)
    assert list(torch.load(path, weights_only=True)) == [hookpoint]


def test_hf_layers_overrides_an_unknown_architecture(make_model, tmp_path):
    vectors = vectors_from_model(make_model("bias"))
    path = save_lm_eval(
        vectors, tmp_path / "s.pt", architecture="FooForCausalLM", hf_layers="blocks"
    )
    assert list(torch.load(path, weights_only=True)) == ["blocks.1"]


@pytest.mark.parametrize(
    "hook", ["blocks.1.hook_mlp_out", "blocks.1.hook_resid_mid", "blocks.1.attn.hook_z"]
)
def test_non_residual_hooks_are_refused_in_one_line(hook, tmp_path, capsys):
    sae = tiny_sae(hook_name=hook, d_in=32)
    model = _randomise(ISaeRFTModel(tiny_model(), sae, ISaeRFTConfig(component="bias")))
    with pytest.raises(ValueError, match="not a residual-stream hook") as info:
        get_format("lm-eval").check(model, WriteOptions(hf_architecture="GPT2LMHeadModel"))
    assert "\n" not in str(info.value) and hook in str(info.value)

    # The same refusal from the CLI: exit 2, one line on stderr, no file.
    save_model(model.model, tmp_path / "model")
    sae.save_model(str(tmp_path / "sae"))
    model.save_pretrained(tmp_path / "run")
    out = tmp_path / "steer.pt"
    argv = ["export", str(tmp_path / "run"), "--model", str(tmp_path / "model")]
    argv += ["--sae", str(tmp_path / "sae"), "--format", "lm-eval", "--out", str(out)]
    assert main([*argv, "--hf-layers", "h"]) == 2
    err = _one_line_refusal(capsys)
    assert "not a residual-stream hook" in err and hook in err
    assert not out.exists()


def test_embeddings_unknown_architectures_and_bad_suffixes_are_refused(make_model, tmp_path):
    emb = make_model("bias", hooks=("blocks.0.hook_resid_pre",))
    with pytest.raises(ValueError, match="embeddings"):
        get_format("lm-eval").check(emb, WriteOptions(hf_architecture="GPT2LMHeadModel"))
    # The factory model is not GPT-2 shaped (d_mlp = 2 d_model) and records no architecture.
    bias = make_model("bias")
    assert hf_architecture(bias.model) is None
    with pytest.raises(ValueError, match=r"--hf-layers MODULE") as info:
        get_format("lm-eval").check(bias, WriteOptions())
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"'FooForCausalLM' are unknown"):
        decoder_layers_module("FooForCausalLM")
    with pytest.raises(ValueError, match="not a module path"):
        decoder_layers_module(None, "h.0; rm")
    vectors = vectors_from_model(bias)
    with pytest.raises(ValueError, match=r"name it steer\.pt"):
        save_lm_eval(vectors, tmp_path / "steer.safetensors", architecture="GPT2LMHeadModel")
    with pytest.raises(ValueError, match="hf_architecture"):
        get_format("lm-eval").write(vectors, tmp_path / "steer.pt", WriteOptions())
    assert not list(tmp_path.iterdir())


def test_cli_reads_the_architecture_from_the_model(tmp_path, capsys):
    sae = tiny_sae(hook_name="blocks.1.hook_resid_post")
    model = tiny_model()
    model.cfg.original_architecture = "LlamaForCausalLM"  # as TransformerLens records a hub model
    save_model(model, tmp_path / "model")
    sae.save_model(str(tmp_path / "sae"))
    _randomise(ISaeRFTModel(model, sae, ISaeRFTConfig(component="bias"))).save_pretrained(
        tmp_path / "run"
    )
    out = tmp_path / "steer.pt"
    argv = ["export", str(tmp_path / "run"), "--model", str(tmp_path / "model")]
    argv += ["--sae", str(tmp_path / "sae"), "--format", "lm-eval", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "lm_eval --model steered" in capsys.readouterr().out
    assert list(torch.load(out, weights_only=True)) == ["layers.1"]


# ---- lm-eval's own code ------------------------------------------------------------------------


@needs_lm_eval
@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma2", "qwen2", "gpt_neox", "opt"])
def test_hookpoints_resolve_in_lm_evals_steer(model_type):
    """lm-eval's ``steer`` raises unless every hookpoint names a module of ``model.base_model``."""
    from lm_eval.models.hf_steered import steer as lm_eval_steer
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {"gpt2": dict(n_layer=2, n_embd=16, n_head=2),
             "opt": dict(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, ffn_dim=32,
                         word_embed_proj_dim=16)}  # fmt: skip
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, head_dim=8, vocab_size=64)  # fmt: skip
    config = AutoConfig.for_model(model_type, **sizes.get(model_type, small))
    hf = AutoModelForCausalLM.from_config(config).eval()
    architecture = type(hf).__name__
    point = f"{DECODER_LAYERS[architecture]}.1"
    seen: list[torch.Tensor] = []
    with torch.no_grad(), lm_eval_steer(hf, {point: lambda acts: seen.append(acts) or acts}):
        hf(torch.tensor([[1, 2, 3]]))
    assert len(seen) == 1 and seen[0].shape[-1] == 16


@needs_lm_eval
@pytest.mark.slow
def test_lm_evals_steered_model_matches_isaerft_on_the_organism(tiny_organism, tmp_path, capsys):
    """Exact for a bias run: lm-eval's steered HF model == ISaeRFT model == isaerft ``steer``."""
    from lm_eval.models.hf_steered import SteeredModel

    from isaerft.organism.hf import save_hf_model

    org = tiny_organism
    base, sae = org.load_model(), org.load_sae()
    isaerft_model = _randomise(ISaeRFTModel(base, sae, ISaeRFTConfig(component="bias")), seed=3)
    isaerft_model.save_pretrained(tmp_path / "run")
    hf_dir = save_hf_model(base, tmp_path / "hf")

    out = tmp_path / "steer.pt"
    argv = ["export", str(tmp_path / "run"), "--model", str(org.model_dir)]
    argv += ["--sae", str(org.sae_dir), "--format", "lm-eval", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert "steer_path=" in capsys.readouterr().out
    expected_point = lm_eval_hookpoint(org.hook_name, "h", base.cfg.n_layers)
    assert list(torch.load(out, weights_only=True)) == [expected_point]

    lm = SteeredModel(pretrained=str(hf_dir), steer_path=str(out), device="cpu", dtype="float32")
    texts = ["User: hello\nAssistant: hi there", "the cat sat on the mat and then"]
    tokens = base.to_tokens(texts[0]), base.to_tokens(texts[1])
    gen = torch.Generator().manual_seed(0)
    tokens += (torch.randint(0, base.cfg.d_vocab, (2, 24), generator=gen),)
    worst = 0.0
    for toks in tokens:
        with torch.no_grad():
            lm_eval_logits = lm._model_call(toks)  # lm-eval's forward, under its own hooks
            reference = isaerft_model(toks)
            with steer(base, out) as steered:  # isaerft steering with the same file
                steered_logits = steered(toks)
            base_logits = base(toks)
        assert (reference - base_logits).abs().max() > 1e-2  # the edit does something
        worst = max(worst, float((lm_eval_logits - reference).abs().max()))
        torch.testing.assert_close(steered_logits, reference, atol=ATOL, rtol=0)
    print(f"max |lm-eval steered - ISaeRFT| logit difference: {worst:.3g}")
    assert worst < ATOL
