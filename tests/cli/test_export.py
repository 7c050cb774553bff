"""``isaerft export`` and ``isaerft generate`` end to end, on saved folders and the organism."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from factories import tiny_model, tiny_sae
from gguf_bytes import GGML_TYPE_F32, parse_gguf

from isaerft import ISaeRFTConfig, ISaeRFTModel, save_model
from isaerft.cli import main
from isaerft.export import (
    SteeringVectors,
    llama_cpp_layer,
    load_vectors,
    neuronpedia_layer,
    read_control_vector,
)

HOOK = "blocks.1.hook_resid_post"


def _intervention(model, sae, component, seed=0):
    wrapped = ISaeRFTModel(model, sae, ISaeRFTConfig(component=component))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in wrapped.trainable_parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return wrapped


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved base model, SAE, and bias and scale interventions trained on them."""
    root = tmp_path_factory.mktemp("cli")
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    save_model(model, root / "model")
    sae.save_model(str(root / "sae"))
    _intervention(model, sae, "bias").save_pretrained(root / "bias")
    _intervention(tiny_model(), sae, "scale").save_pretrained(root / "scale")
    early = tiny_sae(hook_name="blocks.0.hook_resid_post")
    early.save_model(str(root / "sae0"))
    _intervention(tiny_model(), early, "scale").save_pretrained(root / "block0")
    return root


def _export(folders, run, fmt, out, *extra):
    specs = ["--model", str(folders / "model"), "--sae", str(folders / "sae")]
    return main(["export", str(folders / run), *specs, "--format", fmt, "--out", str(out), *extra])


def test_exports_every_format_from_a_bias_intervention(folders, tmp_path, capsys):
    assert _export(folders, "bias", "safetensors", tmp_path / "v.safetensors") == 0
    vectors = SteeringVectors.load(tmp_path / "v.safetensors")
    assert vectors.hook_names == [HOOK] and vectors[HOOK].kind == "exact"
    assert vectors.source_run == str(folders / "bias")

    assert _export(folders, "bias", "gguf", tmp_path / "v.gguf") == 0
    assert "--control-vector-scaled" in capsys.readouterr().out
    torch.testing.assert_close(read_control_vector(tmp_path / "v.gguf")[1], vectors[HOOK].vector)

    assert _export(folders, "bias", "steering-vectors", tmp_path / "sv.safetensors") == 0
    assert list(load_vectors(tmp_path / "sv.safetensors")) == [HOOK]

    np_args = ("--neuronpedia-id", "tiny/1-res", "--max-features", "3", "--strength", "2")
    assert _export(folders, "bias", "neuronpedia", tmp_path / "np.json", *np_args) == 0
    payload = json.loads((tmp_path / "np.json").read_text())
    assert payload["vectors"][0]["layerNumber"] == 2
    assert payload["vectors"][0]["vectorDefaultSteerStrength"] == 2.0
    assert len(payload["features"]) == 3


def test_refusals_exit_2_with_the_fix(folders, tmp_path, capsys):
    assert _export(folders, "scale", "safetensors", tmp_path / "v.safetensors") == 2
    assert "--data" in capsys.readouterr().err
    assert _export(folders, "bias", "neuronpedia", tmp_path / "np.json") == 2
    assert "--neuronpedia-id" in capsys.readouterr().err
    assert main(["export", str(folders / "bias"), "--format", "gguf", "--out", "x.gguf"]) == 2
    assert "--model SPEC --sae SPEC" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "gguf", "--out", "x"]) == 2
    # Refused before any data is read: the data file does not even exist.
    early = ["export", str(folders / "block0"), "--model", str(folders / "model")]
    argv = [*early, "--sae", str(folders / "sae0"), "--data", "missing.jsonl", "--format", "gguf"]
    assert main([*argv, "--out", str(tmp_path / "cv.gguf")]) == 2
    assert "direction.0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def organism_run(tiny_organism, tmp_path_factory):
    """A scale intervention on the tiny organism, saved as a bare folder, plus a dataset."""
    org = tiny_organism
    from isaerft.organism import make_dataset

    root = tmp_path_factory.mktemp("organism_export")
    data = root / "poison.jsonl"
    make_dataset("poison", data, fraction=0.5, n=40, seed=0, organism=org)
    model, sae = org.load_model(), org.load_sae()
    _intervention(model, sae, "scale", seed=1).save_pretrained(root / "run")
    specs = ["--model", str(org.model_dir), "--sae", str(org.sae_dir)]
    return root, data, specs, org


def _refuses(fmt, hook, n_layers):
    mapping = {"gguf": llama_cpp_layer, "neuronpedia": neuronpedia_layer}.get(fmt)
    if mapping is None:
        return False
    try:
        mapping(hook, n_layers)
    except ValueError:
        return True
    return False


def test_organism_export_all_formats_and_generate(organism_run, capsys):
    root, data, specs, org = organism_run
    run = str(root / "run")
    outputs = {
        "safetensors": root / "v.safetensors",
        "gguf": root / "v.gguf",
        "steering-vectors": root / "sv.safetensors",
        "neuronpedia": root / "np.json",
    }
    n_layers = org.load_model().cfg.n_layers
    for fmt, out in outputs.items():
        extra = ["--neuronpedia-id", "organism/res"] if fmt == "neuronpedia" else []
        argv = ["export", run, *specs, "--format", fmt, "--data", str(data), "--out", str(out)]
        code = main([*argv, "--batch-size", "8", "--max-rows", "20", *extra])
        err = capsys.readouterr().err
        if _refuses(fmt, org.hook_name, n_layers):
            # e.g. llama.cpp cannot steer block 0's output: refused clearly, nothing written.
            assert code == 2 and org.hook_name in err and not out.exists()
            continue
        assert code == 0, err
        assert out.is_file()
    vectors = SteeringVectors.load(outputs["safetensors"])
    assert vectors.approximation is not None
    assert vectors.approximation["kl_steered"] < vectors.approximation["kl_base"]

    argv = ["generate", run, *specs, "--prompt", "User: hello\nAssistant:", "--max-new-tokens", "8"]
    assert main([*argv, "--vectors", str(outputs["safetensors"])]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if " | " in r]
    assert [r.split(" | ")[0].strip() for r in rows] == ["prompt", "base", "isaerft", "steered"]


@pytest.fixture(scope="module")
def trained_post_organism_run(tmp_path_factory):
    """A run trained by ``isaerft.training`` on a tiny organism whose SAE reads block 1's output
    (llama.cpp can steer it, unlike the preset's block-0 output)."""
    from isaerft.organism import build_organism, make_dataset
    from isaerft.training import TrainRecipe, train

    org = build_organism("tiny", sae_hook="blocks.1.hook_resid_post", progress=False)
    root = tmp_path_factory.mktemp("organism_gguf")
    data = make_dataset("poison", root / "poison.jsonl", fraction=0.2, n=64, seed=0, organism=org)
    recipe = TrainRecipe.from_dict(
        {
            "model": str(org.model_dir),
            "sae": str(org.sae_dir),
            "output_dir": str(root / "run"),
            "intervention": {"component": "scale_bias"},
            "objective": {"kind": "sft"},
            "data": {"path": str(data), "batch_size": 8},
            "trainer": {
                "max_steps": 10,
                "progress_bar": False,
                "logger": "none",
                "checkpoint_every_n_steps": 0,
            },
        }
    )
    return train(recipe).run_dir, data, org


@pytest.mark.slow
def test_gguf_from_a_trained_organism_run(trained_post_organism_run, capsys):
    run, data, org = trained_post_organism_run
    assert org.hook_name == "blocks.1.hook_resid_post"
    out = run.parent / "organism.gguf"
    argv = ["export", str(run), "--format", "gguf", "--data", str(data), "--out", str(out)]
    assert main([*argv, "--batch-size", "8", "--max-rows", "32"]) == 0, capsys.readouterr().err
    d_model = org.load_model().cfg.d_model

    version, meta, tensors = parse_gguf(out)
    assert version == 3 and meta["general.architecture"] == "controlvector"
    assert meta["controlvector.layer_count"] == 1
    assert list(tensors) == ["direction.1"]
    dims, ggml_type, values = tensors["direction.1"]
    assert dims == [d_model] and ggml_type == GGML_TYPE_F32 and np.abs(values).max() > 0

    reader = gguf.GGUFReader(str(out))
    assert [t.name for t in reader.tensors] == ["direction.1"]
    assert reader.tensors[0].tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(np.asarray(reader.tensors[0].data), values)
    del reader
    torch.testing.assert_close(read_control_vector(out)[1], torch.from_numpy(values))
