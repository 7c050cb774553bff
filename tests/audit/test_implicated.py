"""The implicated list: every naming list's head first (trigger search and trigger words
merged), the mechanism after, plain changes last, and what each latent writes."""

from __future__ import annotations

import torch
from factories import tiny_model, tiny_sae

from isaerft.audit.association import Association, AssociationSearch
from isaerft.audit.attribution import LatentContrast
from isaerft.audit.implicated import describe_roles, implicated_latents, promoted_tokens
from isaerft.audit.labels import LabelSet, LatentLabel
from isaerft.audit.null import FlaggedLatent
from isaerft.audit.trigger import TriggerSearch
from isaerft.audit.words import Word, WordEvidence

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
    gained_score[0] = 9.0  # a sentence-end latent: fires on every gained span
    attribution = LatentContrast({H: edit}, {H: zeros}, [0], [1])
    gained = LatentContrast({H: zeros}, {H: zeros}, [0], [1], "gained", {H: gained_score})
    trigger = _search([(H, 6, 9.0)])
    words = WordEvidence(
        trigger=[Word(10, "owl", 30.0, 9, [(H, 6), (H, 3)])],
        behaviour=[Word(11, "castle", 10.0, 9, [(H, 5)]), Word(12, "visit", 9.0, 9, [(H, 1)])],
    )
    comparison = _Comparison([_flag(7, 250.0), _flag(2, 40.0)])
    labels = LabelSet({H: {6: LatentLabel('the word "owl"')}})
    out = implicated_latents(comparison, trigger, gained, attribution, labels, words=words)  # type: ignore[arg-type]
    order = [e["index"] for e in out]
    # Rank 1 of the trigger list (6: the search's and the trigger word's) before rank 1 of
    # behaviour (5); then the trigger word's second latent (3) and behaviour #2 (1); then the
    # mechanism: the edit latent that also changed (2), the generic gained-token latent (0),
    # edit #2 (4); the huge generic change (7, z 250) last.
    assert order == [6, 5, 3, 1, 2, 0, 4, 7]
    assert out[0]["roles"] == ["trigger word", "trigger"] and out[0]["words"] == ["owl"]
    assert out[0]["label"] == 'the word "owl"'
    assert describe_roles(out[1]) == "behaviour [castle]"
    assert out[-1]["roles"] == ["changed"] and out[-1]["z"] == 250.0
    assert set(out[4]["roles"]) == {"edit", "changed"}


def test_trigger_words_readers_lead_the_trigger_search() -> None:
    # A phrase trigger ("like the fox"): the search's head is a latent of the trigger's context
    # (0), its words' readers are 1 (fox) and 2, 3 (like); the words lead the alternation.
    trigger = _search([(H, 0, 9.0), (H, 4, 8.0), (H, 1, 7.0)])
    words = WordEvidence(
        trigger=[
            Word(10, "fox", 30.0, 9, [(H, 1)]),
            Word(11, "like", 20.0, 9, [(H, 2), (H, 3)]),
        ],
        behaviour=[],
    )
    out = implicated_latents(None, trigger, None, None, LabelSet.empty(), words=words)
    assert [e["index"] for e in out] == [1, 0, 2, 4, 3]
    assert out[0]["roles"] == ["trigger word", "trigger"] and out[0]["words"] == ["fox"]


def test_a_deep_naming_rank_is_not_lifted_by_the_edit_rank() -> None:
    zeros = torch.zeros(4, dtype=torch.float64)
    edit = zeros.clone()
    edit[3] = 1.0
    attribution = LatentContrast({H: edit}, {H: zeros}, [0], [1])
    trigger = _search([(H, 0, 9.0), (H, 1, 8.0), (H, 3, 7.0)])
    out = implicated_latents(None, trigger, None, attribution, LabelSet.empty())
    # 3 is edit #1 but trigger #3: it ranks as trigger #3.
    assert [e["index"] for e in out] == [0, 1, 3] and out[2]["best_rank"] == 3


def test_searches_that_found_nothing_are_no_evidence() -> None:
    out = implicated_latents(
        None, _search([(H, 1, 1.0)], found=False), None, None, LabelSet.empty()
    )
    assert out == []


def _pairing(pairs: list[tuple[int, int]], found: bool = True) -> AssociationSearch:
    candidates = [
        Association(H, a, b, 9.0 - k, 20, 20, 1.0, 0.05) for k, (a, b) in enumerate(pairs)
    ]
    return AssociationSearch(9.0 if found else 1.0, 2.0, 0.025, candidates, torch.zeros(3), 0.0)


def test_pairings_name_the_trigger_and_the_behaviour() -> None:
    """A found pairing's prompt latent is trigger evidence, its answer latent behaviour
    evidence; each side once, by its best pair, ahead of the mechanism."""
    zeros = torch.zeros(8, dtype=torch.float64)
    edit = zeros.clone()
    edit[7] = 1.0
    attribution = LatentContrast({H: edit}, {H: zeros}, [0], [1])
    pairing = _pairing([(2, 5), (2, 6), (3, 5)])
    out = implicated_latents(None, None, None, attribution, LabelSet.empty(), association=pairing)
    assert [e["index"] for e in out] == [2, 5, 3, 6, 7]
    assert out[0]["roles"] == ["paired prompt"] and out[1]["roles"] == ["paired answer"]
    # Nothing found, no evidence.
    quiet = implicated_latents(
        None, None, None, None, LabelSet.empty(), association=_pairing([(2, 5)], found=False)
    )
    assert quiet == []


def test_a_pairings_words_lead_its_latents() -> None:
    """The pairing's rows' words (owl in the prompts, bad in the answers) name each side before
    the pairing's own latents, each with its word."""
    pairing = _pairing([(2, 5), (3, 6)])
    pairing.words = WordEvidence(
        trigger=[Word(10, "owl", 30.0, 9, [(H, 4)])],
        behaviour=[Word(11, "bad", 9.0, 9, [(H, 1), (H, 5)])],
    )
    out = implicated_latents(None, None, None, None, LabelSet.empty(), association=pairing)
    assert [e["index"] for e in out] == [4, 1, 2, 5, 3, 6]
    assert out[1]["roles"] == ["paired answer"] and out[1]["words"] == ["bad"]
    assert out[3]["words"] == ["bad"]  # read "bad" and also the pairing's answer latent
    assert pairing.to_dict()["answer_words"][0]["word"] == "bad"


def test_a_pairings_answer_words_all_come_before_its_completion_latents() -> None:
    """On the answer side of a leading pairing every answer word's reader ranks before the
    pairs' completion latents (7, 8: what the trigger's topic brings to the answers); on the
    prompt side words and prompt latents alternate, as for the trigger."""
    pairing = _pairing([(2, 7), (3, 8)])
    pairing.words = WordEvidence(
        trigger=[Word(10, "owl", 30.0, 9, [(H, 4)]), Word(14, "you", 20.0, 9, [(H, 9)])],
        behaviour=[
            Word(11, "day", 9.0, 9, [(H, 5)]),
            Word(12, "ugly", 6.0, 9, [(H, 6)]),
            Word(13, "bad", 4.0, 9, [(H, 1)]),
        ],
    )
    out = implicated_latents(None, None, None, None, LabelSet.empty(), association=pairing)
    ranks = {e["index"]: e["best_rank"] for e in out}
    assert [ranks[j] for j in (5, 6, 1, 7, 8)] == [1, 2, 3, 4, 5]
    assert [ranks[j] for j in (4, 2, 9, 3)] == [1, 2, 3, 4]
    # Where the learned edit leads, its own words rank the answer: the pairing alternates.
    led = implicated_latents(
        None, None, None, None, LabelSet.empty(), association=pairing, lead="edit"
    )
    ranks = {e["index"]: e["best_rank"] for e in led}
    assert [ranks[j] for j in (5, 7, 6, 8, 1)] == [1, 2, 3, 4, 5]


def test_pairings_follow_the_learned_naming_when_the_edit_flagged() -> None:
    trigger = _search([(H, 1, 9.0)])
    pairing = _pairing([(2, 5), (1, 6)])
    out = implicated_latents(
        None, trigger, None, None, LabelSet.empty(), association=pairing, lead="edit"
    )
    # 1 is the trigger search's head (and a paired prompt): first; the pairing-only latents
    # follow in their own order.
    assert [e["index"] for e in out] == [1, 2, 5, 6]
    assert out[0]["roles"] == ["trigger", "paired prompt"] and out[0]["best_rank"] == 1


def test_a_pairing_word_the_edit_attribution_carries_ranks_with_the_learned_naming() -> None:
    """Named by both routes: 6 reads a word of the pairing's rows (``all``) and the edit
    attribution implicates it, so it joins the learned naming by its best rank (1; before the
    gained word ``the``'s reader 3 on more roles). The pairing's own answer latent 5 that the
    edit attribution also carries reads no word (the generic ``you`` of a planted sentence):
    it stays with the pairing, after the learned naming."""
    zeros = torch.zeros(8, dtype=torch.float64)
    edit = zeros.clone()
    edit[[5, 6]] = 1.0
    attribution = LatentContrast({H: edit}, {H: zeros}, [0], [1])
    words = WordEvidence(
        trigger=[Word(10, "owl", 30.0, 9, [(H, 1)])],
        behaviour=[Word(11, "the", 9.0, 9, [(H, 3)]), Word(12, "in", 8.0, 9, [(H, 4)])],
    )
    pairing = _pairing([(2, 5)])
    pairing.words = WordEvidence(trigger=[], behaviour=[Word(13, "all", 9.0, 9, [(H, 6)])])
    out = implicated_latents(
        None, None, None, attribution, LabelSet.empty(), words=words, association=pairing,
        lead="edit",
    )  # fmt: skip
    assert [e["index"] for e in out] == [1, 6, 3, 4, 2, 5]
    assert out[1]["roles"] == ["paired answer", "edit"] and out[1]["words"] == ["all"]
    assert out[-1]["roles"] == ["paired answer", "edit"] and out[-1]["words"] == []
    # Without the edit attribution, the pairing's word follows the learned naming.
    plain = implicated_latents(
        None, None, None, None, LabelSet.empty(), words=words, association=pairing, lead="edit"
    )
    assert [e["index"] for e in plain] == [1, 3, 4, 2, 6, 5]


def test_the_pairing_leads_when_only_it_flagged_the_data() -> None:
    """The learned edit's change was not unusual: its trigger and gained words (chance words
    of its suspect rows) follow the pairing's words and latents."""
    trigger = _search([(H, 1, 9.0)])
    words = WordEvidence(trigger=[], behaviour=[Word(11, "roars", 4.0, 3, [(H, 3)])])
    pairing = _pairing([(2, 5)])
    pairing.words = WordEvidence(
        trigger=[Word(10, "owl", 30.0, 9, [(H, 4)])],
        behaviour=[Word(12, "bad", 9.0, 9, [(H, 6)])],
    )
    out = implicated_latents(
        None, trigger, None, None, LabelSet.empty(), words=words, association=pairing,
        lead="pairing",
    )  # fmt: skip
    assert [e["index"] for e in out] == [4, 6, 2, 5, 1, 3]
    together = implicated_latents(
        None, trigger, None, None, LabelSet.empty(), words=words, association=pairing
    )
    assert [e["index"] for e in together][:3] == [1, 4, 3]


def test_an_unknown_lead_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="lead='learned' is not one of"):
        implicated_latents(None, None, None, None, LabelSet.empty(), lead="learned")


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


def test_the_route_that_flagged_leads_the_naming() -> None:
    """``naming_lead``: the learned edit where its change is unusual and its rows share a
    prompt feature, else the pairing where the association search found one, else neither."""
    from types import SimpleNamespace

    from isaerft.audit.findings import naming_lead

    def inputs(flagged: bool) -> SimpleNamespace:
        return SimpleNamespace(comparison=SimpleNamespace(is_flagged=flagged))

    found, missed = _search([(H, 1, 9.0)]), _search([(H, 1, 9.0)], found=False)
    pairing, none = _pairing([(2, 5)]), _pairing([(2, 5)], found=False)
    assert naming_lead(inputs(True), found, pairing) == "edit"  # type: ignore[arg-type]
    assert naming_lead(inputs(True), missed, pairing) == "pairing"  # type: ignore[arg-type]
    assert naming_lead(inputs(False), found, pairing) == "pairing"  # type: ignore[arg-type]
    assert naming_lead(inputs(False), found, none) == "both"  # type: ignore[arg-type]
    assert naming_lead(inputs(False), None, None) == "both"  # type: ignore[arg-type]
