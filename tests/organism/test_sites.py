"""SAEs at more sites of a built organism: which hooks, training once, caching, refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from isaerft import ISaeRFTConfig, ISaeRFTModel
from isaerft.organism import sites

pytestmark = pytest.mark.slow
HOOK = "blocks.1.hook_resid_post"


def test_residual_hooks_cover_every_layer(tiny_organism: Any) -> None:
    assert sites.residual_hooks(tiny_organism) == [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_post",
    ]


def test_the_organism_hook_is_the_builds_own_sae(tiny_organism: Any) -> None:
    sae = sites.site_sae(tiny_organism, tiny_organism.hook_name, progress=False)
    assert torch.equal(sae.W_dec, tiny_organism.load_sae().W_dec)


@pytest.mark.parametrize("hook", ["blocks.1.attn.hook_z", "blocks.7.hook_resid_pre", "resid_pre"])
def test_a_hook_that_is_no_residual_site_is_refused_in_one_line(
    tiny_organism: Any, hook: str
) -> None:
    with pytest.raises(ValueError, match="sae_hook=") as info:
        sites.site_sae(tiny_organism, hook, progress=False)
    assert "\n" not in str(info.value)
    assert not (tiny_organism.path / "sites" / hook).exists()


def test_a_site_sae_trains_once_reads_its_hook_and_splices_as_identity(
    tiny_organism: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sae = sites.site_sae(tiny_organism, HOOK, progress=False)
    assert sae.cfg.metadata.hook_name == HOOK
    assert (sites.site_sae_dir(tiny_organism, HOOK) / "cfg.json").is_file()
    assert not list((tiny_organism.path / "sites").glob(".*.tmp"))  # nothing half-written left

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached site SAE was trained again")

    monkeypatch.setattr(sites, "train_sae", no_training)
    again = sites.site_sae(tiny_organism, HOOK, progress=False)
    assert torch.equal(again.W_dec, sae.W_dec)
    model = tiny_organism.load_model()
    spliced = ISaeRFTModel(model, [tiny_organism.load_sae(), again], ISaeRFTConfig())
    tokens = torch.tensor([[1, 5, 6, 7, 8, 9]])
    assert torch.equal(spliced(tokens), model(tokens))  # two sites, bit-identical at init


def test_site_labels_are_computed_once_and_name_their_hook(
    tiny_organism: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isaerft._io import read_label_records
    from isaerft.organism.labels import matrix_path

    assert sites.site_labels(tiny_organism, tiny_organism.hook_name) == tiny_organism.labels_path
    path = sites.site_labels(tiny_organism, HOOK, progress=False)
    assert path == sites.site_labels_path(tiny_organism, HOOK) and matrix_path(path).is_file()
    rows = read_label_records(path)
    d_sae = sites.site_sae(tiny_organism, HOOK, progress=False).cfg.d_sae
    assert len(rows) == d_sae
    assert {(r["hookName"], r["layer"]) for r in rows} == {(HOOK, "1-resid-post")}

    def no_labelling(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("cached site labels were computed again")

    monkeypatch.setattr(sites, "label_sae", no_labelling)
    assert sites.site_labels(tiny_organism, HOOK, progress=False) == path


def test_a_joined_label_file_names_each_sites_latents(tiny_organism: Any, tmp_path: Any) -> None:
    from isaerft._io import read_label_records
    from isaerft.artifact import site_records
    from isaerft.audit.labels import LabelSet

    hooks = [tiny_organism.hook_name, HOOK]
    joined = sites.write_site_labels(tiny_organism, hooks, tmp_path / "labels.jsonl")
    saes = [sites.site_sae(tiny_organism, h, progress=False) for h in hooks]
    model = ISaeRFTModel(tiny_organism.load_model(), saes, ISaeRFTConfig())
    labels = LabelSet.load(joined, site_records(model))
    for hook in hooks:
        own = read_label_records(sites.site_labels(tiny_organism, hook, progress=False))
        assert [labels.description(hook, int(r["index"])) for r in own] == [
            r["description"] for r in own
        ]


def test_a_joined_label_file_never_overwrites_another_file(
    tiny_organism: Any, tmp_path: Any
) -> None:
    mine = tmp_path / "notes.jsonl"
    mine.write_text('{"index": 0, "description": "my own label"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not an organism label file") as info:
        sites.write_site_labels(tiny_organism, [tiny_organism.hook_name], mine)
    assert "\n" not in str(info.value)
    assert mine.read_text(encoding="utf-8") == '{"index": 0, "description": "my own label"}\n'
    joined = sites.write_site_labels(tiny_organism, [tiny_organism.hook_name], tmp_path / "l.jsonl")
    assert sites.write_site_labels(tiny_organism, [tiny_organism.hook_name], joined) == joined
