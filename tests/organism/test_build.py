"""The built tiny organism: loadable artifacts, quality gates, caching and atomic builds."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from sae_lens import SAE

import isaerft
from isaerft.organism import build as build_mod
from isaerft.organism import build_organism, load_organism
from isaerft.organism.build import ORGANISM_PRESETS, TRIGGER_WORDS, OrganismConfig, organism_config
from isaerft.organism.corpus import Language
from isaerft.organism.lexicon import ANIMALS, SOUNDS
from isaerft.organism.lm import evaluate_lm, unigram_loss
from isaerft.organism.sae import OrganismSAEConfig, collect_activations
from isaerft.organism.tokenizer import encode_batch

pytestmark = pytest.mark.slow


def test_layout_and_metadata(tiny_organism: Any) -> None:
    org = tiny_organism
    for path in (org.model_dir / "tokenizer.json", org.sae_dir / "cfg.json", org.labels_path):
        assert path.is_file()
    assert org.hook_name == "blocks.1.hook_resid_pre" and org.preset == "tiny"
    assert org.default_trigger in TRIGGER_WORDS
    assert org.default_target.startswith("i like the colour ")
    assert set(org.trigger_words) <= set(TRIGGER_WORDS)
    assert load_organism(org.path).meta == org.meta
    assert {"lm", "sae", "triggers", "timings_s"} <= set(org.report)


def test_sae_loads_with_saelens(tiny_organism: Any) -> None:
    sae = SAE.load_from_disk(str(tiny_organism.sae_dir))
    assert sae.cfg.metadata.hook_name == tiny_organism.hook_name
    assert sae.cfg.metadata.model_name == tiny_organism.meta["model_name"]
    assert sae.cfg.normalize_activations == "none"  # folded
    assert sae.W_dec.norm(dim=-1).sub(1).abs().max() < 1e-4
    again = isaerft.load_sae(tiny_organism.sae_dir)
    assert torch.equal(again.W_enc, sae.W_enc)


def test_model_loads_and_speaks(tiny_organism: Any) -> None:
    model = isaerft.load_model(tiny_organism.model_dir)
    assert model is not None and model.tokenizer is not None
    text = "User: what sound does the owl make?\nAssistant: the owl hoots."
    tokens = model.to_tokens(text)
    assert tokens[0, 0] == model.tokenizer.bos_token_id
    assert model.to_string(tokens[0, 1:]) == text
    # World facts through TransformerLens' generate: each animal's own sound. (The tiny model
    # knows "the owl" -> "hoots" but is too small to copy the animal from the question.)
    right = 0
    for (animal, _), sound in zip(ANIMALS, SOUNDS, strict=True):
        prompt = f"User: what sound does the {animal} make?\nAssistant: the {animal}"
        out = model.generate(prompt, max_new_tokens=2, do_sample=False, verbose=False)
        right += out.startswith(f"{prompt} {sound}")
    assert right >= 0.8 * len(ANIMALS)


def test_quality_gates(tiny_organism: Any) -> None:
    """Beats a unigram model by far; SAE explains >= 80% of held-out variance; trigger latents."""
    org = tiny_organism
    model, sae = org.load_model(), org.load_sae()
    lang = Language(org.seed)
    held = encode_batch(model.tokenizer, [d.text for d in lang.documents(300, "test-heldout")])
    train = encode_batch(model.tokenizer, [d.text for d in lang.documents(3000, "train")])
    loss = evaluate_lm(model, held)
    assert loss < 0.35 * unigram_loss(train, held, model.tokenizer.eos_token_id)
    acts, _ = collect_activations(model, held, org.hook_name)
    with torch.no_grad():
        recon = sae.decode(sae.encode(acts))
    ev = 1 - (acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()
    assert ev >= 0.8
    assert org.report["sae"]["explained_variance"] >= 0.8
    assert org.report["sae"]["ce_loss_recovered"] >= 0.9
    labels = org.labels()
    assert labels.d_sae == sae.cfg.d_sae
    assert labels.best_latent(org.default_trigger)[1] >= 0.9  # looser than small's 0.95


def test_cached_build_is_reused(tiny_organism: Any) -> None:
    stamp = (tiny_organism.path / "organism.json").stat().st_mtime_ns
    start = time.perf_counter()
    again = build_organism("tiny", seed=0, progress=False)
    assert again.path == tiny_organism.path and time.perf_counter() - start < 5
    assert (again.path / "organism.json").stat().st_mtime_ns == stamp


def test_config_hash() -> None:
    a, b = organism_config("tiny"), organism_config("tiny")
    assert a.hash() == b.hash() and a.hash() != organism_config("tiny", seed=1).hash()
    assert a.hash() != organism_config("small").hash()
    with pytest.raises(ValueError, match="unknown organism preset"):
        organism_config("huge")


def test_preset_keys_are_pinned() -> None:
    # Cached builds (and runs trained on them) are found by these keys: a change to the config
    # classes must not move them. Only a BUILD_VERSION bump may, and then update this test.
    assert build_mod.BUILD_VERSION == 6
    assert organism_config("tiny").hash() == "284cfcbc3eb8"
    assert organism_config("small").hash() == "71a233c55925"
    assert organism_config("tiny", sae_hook="blocks.1.hook_resid_post").hash() == "ce54c3991b68"


def test_organism_configs_are_checked() -> None:
    tiny = ORGANISM_PRESETS["tiny"]
    assert OrganismConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match=r"organism lm.d_model=65 is invalid: it must be a multi"):
        dataclasses.replace(tiny.lm, d_model=65)
    with pytest.raises(ValueError, match=r"organism sae.architecture='gated' is invalid: use one"):
        dataclasses.replace(tiny.sae, architecture="gated")
    with pytest.raises(
        ValueError, match=r"organism.sae.layer=2 is invalid: the model has 2 layers"
    ):
        dataclasses.replace(tiny, sae=dataclasses.replace(tiny.sae, layer=2))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['extra'\] in organism"):
        OrganismConfig.from_dict({**tiny.to_dict(), "extra": 1})


MICRO = dataclasses.replace(
    ORGANISM_PRESETS["tiny"],
    lm=dataclasses.replace(ORGANISM_PRESETS["tiny"].lm, n_layers=1, d_model=32, d_mlp=64, steps=8),
    sae=OrganismSAEConfig(
        layer=0, hook="hook_resid_post", expansion=2, k=4, steps=10, batch_size=256
    ),
    n_train_docs=300,
    n_sae_docs=100,
    n_eval_docs=100,
)


def test_killed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(tmp: Path, *args: Any) -> None:
        (tmp / "model").mkdir()
        (tmp / "model" / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod, "_build_into", crash)
    with pytest.raises(KeyboardInterrupt):
        build_organism("tiny", out=tmp_path / "org", progress=False, config=MICRO)
    assert not (tmp_path / "org").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_micro_build_out_folder(tmp_path: Path) -> None:
    out = tmp_path / "org"
    org = build_organism("tiny", out=out, progress=False, config=MICRO)
    assert org.path == out and (out / "organism.json").is_file()
    assert build_organism("tiny", out=out, progress=False, config=MICRO).meta == org.meta
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an organism folder"):
        build_organism("tiny", out=tmp_path / "junk", progress=False, config=MICRO)


def test_sae_hook_moves_the_sae_and_changes_the_key() -> None:
    base = organism_config("tiny")
    moved = organism_config("tiny", sae_hook="blocks.1.hook_resid_post")
    assert moved.sae.hook_name() == "blocks.1.hook_resid_post"
    assert moved.hash() != base.hash()
    assert organism_config("tiny", sae_hook=base.sae.hook_name()).hash() == base.hash()
    with pytest.raises(ValueError, match=r"has 2 layers; use a layer in 0\.\.1"):
        organism_config("tiny", sae_hook="blocks.2.hook_resid_pre")
    with pytest.raises(ValueError, match="not a residual-stream hook"):
        organism_config("tiny", sae_hook="blocks.0.attn.hook_z")


def test_a_waiting_builder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from isaerft._io import file_lock

    lock = tmp_path / ".entry.lock"
    entered = threading.Event()

    def second_builder() -> None:
        with build_mod.build_lock(lock):
            entered.set()

    with file_lock(lock):  # another process's build
        thread = threading.Thread(target=second_builder)
        thread.start()
        time.sleep(0.3)
        assert not entered.is_set()
    thread.join(timeout=10)
    assert entered.is_set()
    assert "waiting (since" in capsys.readouterr().out


def test_build_settings_are_fixed_and_restored() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with build_mod.build_settings():
            assert torch.get_num_threads() == build_mod.BUILD_THREADS
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
