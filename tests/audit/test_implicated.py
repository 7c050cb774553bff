"""The implicated list: every evidence list's head first, plain changes after, what it writes."""

from __future__ import annotations

import torch
from factories import tiny_model, tiny_sae

from isaerft.audit.attribution import LatentContrast
from isaerft.audit.implicated import implicated_latents, promoted_tokens
from isaerft.audit.labels import LabelSet, LatentLabel
from isaerft.audit.null import FlaggedLatent
from isaerft.audit.trigger import TriggerSearch

H = "blocks.0.hook_resid_post"


def _search(candidates: list[tuple[str, int, float]], found: bool = True) -> TriggerSearch:
    return TriggerSearch([0], {}, {}, {}, 5.0 if found else 1.0, 2.0, candidates)


class _Comparison:
    def __init__(self, flagged: list[FlaggedLatent]) -> None:
        self.flagged = flagged


def _flag(index: int, z: float) -> FlaggedLatent:
    return FlaggedLatent(H, index, z, 1e-9, "scale", 1.0, 0.0, 0.1)


def test_naming_evidence_first_then_mechanism_then_generic_changes() -> None:
    d = 8
    zeros = torch.zeros(d, dtype=torch.float64)
    edit = zeros.clone()
    edit[[2, 4]] = torch.tensor([0.9, 0.5], dtype=torch.float64)
    gained_score = zeros.clone()
    gained_score[[5, 4]] = torch.tensor([7.0, 3.0], dtype=torch.float64)
    attribution = LatentContrast({H: edit}, {H: zeros}, [0], [1])
    gained = LatentContrast({H: zeros}, {H: zeros}, [0], [1], "gained", {H: gained_score})
    trigger = _search([(H, 6, 9.0)])
    comparison = _Comparison([_flag(7, 250.0), _flag(2, 40.0)])
    labels = LabelSet({H: {6: LatentLabel('the word "owl"')}})
    out = implicated_latents(comparison, trigger, gained, attribution, labels)  # type: ignore[arg-type]
    order = [e["index"] for e in out]
    # Rank 1 of trigger (6) before rank 1 of behaviour (5); then 4 (behaviour #2, also edit);
    # then the edit-only latent 2, and the huge generic change (7, z 250) last.
    assert order == [6, 5, 4, 2, 7]
    assert out[-1]["roles"] == ["changed"] and out[-1]["z"] == 250.0
    assert out[0]["label"] == 'the word "owl"'
    assert set(out[2]["roles"]) == {"behaviour", "edit"}
    assert set(out[3]["roles"]) == {"edit", "changed"}


def test_searches_that_found_nothing_are_no_evidence() -> None:
    out = implicated_latents(
        None, _search([(H, 1, 1.0)], found=False), None, None, LabelSet.empty()
    )
    assert out == []


def test_promoted_tokens_follow_the_unembedding() -> None:
    from factories import word_tokenizer

    model = tiny_model()
    model.tokenizer = word_tokenizer([f"w{i}" for i in range(46)])
    sae = tiny_sae(hook_name=H)
    with torch.no_grad():
        sae.W_dec[2] = model.W_U[:, 17] - model.W_U[:, 17].mean()
    tokens = promoted_tokens(model, sae, [2], k=3)
    assert list(tokens) == [2] and len(tokens[2]) == 3
    assert model.tokenizer.convert_ids_to_tokens(17) in tokens[2]
