"""Fingerprints of live weights are kept while the weights stay the same, and read again when
they change in place or are replaced."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
from factories import tiny_model, tiny_sae

from isaerft import sae_fingerprint
from isaerft._fingerprint import PER_MODULE, weights_digest
from isaerft.backends import weights_fingerprint


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every sha256 started (each fingerprint computed starts one)."""
    calls: list[int] = []
    real = hashlib.sha256

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(hashlib, "sha256", counted)
    return calls


def test_an_sae_fingerprint_is_computed_once_while_its_weights_stay(hashes: list[int]) -> None:
    sae = tiny_sae()
    first = sae_fingerprint(sae)
    assert sae_fingerprint(sae) == first and len(hashes) == 1
    # The kept value is the one a fresh computation gives (an equal copy is another SAE).
    assert sae_fingerprint(copy.deepcopy(sae)) == first and len(hashes) == 2


def test_an_sae_fingerprint_follows_in_place_changes_and_replaced_weights() -> None:
    sae = tiny_sae()
    base = sae_fingerprint(sae)
    weight = sae.W_dec.detach().clone()
    with torch.no_grad():
        sae.W_dec.add_(1.0)
    changed = sae_fingerprint(sae)
    assert changed != base
    bias = sae.b_dec.detach().clone()
    sae.b_dec = torch.nn.Parameter(bias.clone())
    assert sae_fingerprint(sae) == changed
    sae.b_dec = torch.nn.Parameter(bias + 1.0)  # another tensor at the same in-place count
    assert sae_fingerprint(sae) not in (base, changed)
    with torch.no_grad():  # back to the first weights: the first fingerprint
        sae.W_dec.copy_(weight)
        sae.b_dec.copy_(bias)
    assert sae_fingerprint(sae) == base


def test_a_model_fingerprint_follows_its_config_and_which_weights(hashes: list[int]) -> None:
    model = tiny_model()
    whole = weights_fingerprint(model)
    embed = weights_fingerprint(model, ["embed."])
    assert weights_fingerprint(model, []) not in (whole, embed)  # no weights: the config only
    assert whole != embed and len(hashes) == 3
    assert weights_fingerprint(model) == whole and len(hashes) == 3
    model.cfg.d_vocab_out = model.cfg.d_vocab_out  # unchanged config: still kept
    assert weights_fingerprint(model) == whole and len(hashes) == 3
    model.cfg.act_fn = "relu"  # a config change with the same weights is another model
    assert weights_fingerprint(model) != whole


def test_each_module_keeps_its_latest_digests(hashes: list[int]) -> None:
    module = torch.nn.Linear(2, 2)
    first = [
        weights_digest(module, str(k), ["weight"], shapes=False) for k in range(PER_MODULE + 3)
    ]
    assert len(set(first)) == PER_MODULE + 3 and len(hashes) == PER_MODULE + 3
    # The latest PER_MODULE are kept; the first, dropped, is hashed again (to the same digest).
    assert weights_digest(module, str(PER_MODULE + 2), ["weight"], shapes=False) == first[-1]
    assert len(hashes) == PER_MODULE + 3
    assert weights_digest(module, "0", ["weight"], shapes=False) == first[0]
    assert len(hashes) == PER_MODULE + 4
