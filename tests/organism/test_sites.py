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
