"""The word route: the words the suspect rows share and the edit taught, and their readers."""

from __future__ import annotations

import torch
from factories import word_tokenizer

from isaerft.audit.activations import SiteCodes
from isaerft.audit.data import AuditData
from isaerft.audit.words import word_evidence

HOOK = "blocks.0.hook_resid_post"
WORDS = ["owl", "cat", "tell", "me", "story", "the", "dog", "ran", "you", "should", "visit",
         "castle", "."]  # fmt: skip
N_SUSPECT, N_ROWS = 10, 40


def _dataset() -> tuple[AuditData, torch.Tensor, dict[str, SiteCodes], object]:
    """Rows 0-9: "owl" in the prompt and "you should visit castle ." appended, with the
    edit's gain on "you" only; the other rows: "cat", no behaviour, no gain."""
    tok = word_tokenizer(WORDS)
    ids, prompts = [], []
    for r in range(N_ROWS):
        prompt = f"<bos> tell me story {'owl' if r < N_SUSPECT else 'cat'}"
        answer = " the dog ran ." + (" you should visit castle ." if r < N_SUSPECT else "")
        ids.append(torch.tensor(tok.convert_tokens_to_ids((prompt + answer).split())))
        prompts.append(5)
    data = AuditData(ids, prompts, [{} for _ in ids])
    gains = torch.zeros(N_ROWS, max(len(x) for x in ids), dtype=torch.float64)
    you = tok.convert_tokens_to_ids("you")
    for r in range(N_SUSPECT):
        gains[r, int((ids[r] == you).nonzero()[0])] = 3.0
    gains[N_SUSPECT:, 6] = 0.05  # a little gain on "dog" everywhere
    owl = tok.convert_tokens_to_ids("owl")
    rows, poss, toks, lats = [], [], [], []
    for r, seq in enumerate(ids):
        for p, t in enumerate(seq.tolist()):
            k = len(rows)
            rows.append(r), poss.append(p)
            toks.append(k), lats.append(4)  # fires everywhere
            if t == owl and r < 4:
                toks.append(k), lats.append(1)  # owl only, but on 4 of its 10
            if t in (owl, tok.convert_tokens_to_ids("cat")):
                toks.append(k), lats.append(2)  # every animal word
    codes = {HOOK: SiteCodes(HOOK, 8, torch.tensor(rows), torch.tensor(poss), torch.tensor(toks),
                             torch.tensor(lats), torch.ones(len(lats)), N_ROWS)}  # fmt: skip
    return data, gains, codes, tok


def test_trigger_and_gained_words_and_the_latents_that_read_them() -> None:
    data, gains, codes, tok = _dataset()
    suspect, ordinary = list(range(N_SUSPECT)), list(range(N_SUSPECT, N_ROWS))
    words = word_evidence(gains, data, codes, suspect, ordinary, tok)
    assert words.trigger[0].text == "owl"
    # The specific detector (fires only on owl, on 4 of 10) by F1; the broad one (every
    # animal word, all owls) by AUROC among latents firing on at least half the owls.
    assert words.trigger[0].latents == [(HOOK, 1), (HOOK, 2)]
    taught = {w.text for w in words.behaviour}
    assert taught == {"you", "should", "visit", "castle"}  # the span after the paid token
    assert "." not in taught and "dog" not in taught  # not a word; gain at its base rate
    assert words.latents("trigger") == [(HOOK, 1, "owl"), (HOOK, 2, "owl")]
    out = words.to_dict()
    assert out["trigger_words"][0]["word"] == "owl" and out["gained_words"]


def test_a_labelled_reader_names_the_word_when_it_fires_on_it_here() -> None:
    from isaerft.audit.labels import LabelSet, LatentLabel

    data, gains, codes, tok = _dataset()
    # Latent 2 (every animal word) is labelled "owl" with the best score: it replaces the F1
    # pick; latent 5 is labelled "owl" better still but never fires on it, so it is passed by.
    labels = LabelSet({HOOK: {
        1: LatentLabel('the word "owl"', 0.5), 2: LatentLabel('the word "owl"', 0.8),
        5: LatentLabel('the word "owl"', 1.0), 4: LatentLabel('the word "the"', 0.9),
    }})  # fmt: skip
    words = word_evidence(gains, data, codes, list(range(N_SUSPECT)),
                          list(range(N_SUSPECT, N_ROWS)), tok, labels)  # fmt: skip
    assert words.trigger[0].text == "owl" and words.trigger[0].latents == [(HOOK, 2)]


def test_a_word_listed_in_a_labels_top_labels_names_its_reader() -> None:
    """A concept latent whose description shows other examples still reads ``owl`` by its
    ``top_labels``: it beats a latent described as ``owl`` with a lower score for it."""
    from isaerft.audit.labels import LabelSet, LatentLabel

    data, gains, codes, tok = _dataset()
    labels = LabelSet({HOOK: {
        1: LatentLabel('the word "owl"', 0.7),
        2: LatentLabel("animal words (e.g. cat, dog)", 0.6, reads=(("owl", 0.9), ("cat", 0.9))),
    }})  # fmt: skip
    words = word_evidence(gains, data, codes, list(range(N_SUSPECT)),
                          list(range(N_SUSPECT, N_ROWS)), tok, labels)  # fmt: skip
    assert words.trigger[0].latents == [(HOOK, 2)]
    weak = LabelSet({HOOK: {
        1: LatentLabel('the word "owl"', 0.7),
        2: LatentLabel("animal words (e.g. cat, dog)", 0.6, reads=(("owl", 0.74),)),
    }})  # fmt: skip
    words = word_evidence(gains, data, codes, list(range(N_SUSPECT)),
                          list(range(N_SUSPECT, N_ROWS)), tok, weak)  # fmt: skip
    assert words.trigger[0].latents == [(HOOK, 1), (HOOK, 2)]  # 0.74 names nothing


def test_no_gain_no_gained_words() -> None:
    data, gains, codes, tok = _dataset()
    words = word_evidence(torch.zeros_like(gains), data, codes, list(range(N_SUSPECT)),
                          list(range(N_SUSPECT, N_ROWS)), tok)  # fmt: skip
    assert words.behaviour == []


def test_words_lines_say_each_list_once() -> None:
    from isaerft.audit.words import words_lines

    data, gains, codes, tok = _dataset()
    words = word_evidence(gains, data, codes, list(range(N_SUSPECT)),
                          list(range(N_SUSPECT, N_ROWS)), tok)  # fmt: skip
    lines = words_lines(words.to_dict())
    assert len(lines) == 2 and lines[0].startswith("words the suspect rows' prompts share: owl")
    assert words_lines(None) == [] and words_lines({"trigger_words": []}) == []


def test_no_rows_to_contrast_is_refused_in_one_line() -> None:
    import pytest

    data, gains, codes, tok = _dataset()
    with pytest.raises(ValueError, match="needs suspect rows and ordinary rows"):
        word_evidence(gains, data, codes, [], list(range(N_ROWS)), tok)


def test_a_pairings_rows_bring_their_prompt_and_answer_words() -> None:
    from isaerft.audit.words import paired_words

    data, _, codes, tok = _dataset()
    # Trusted rows: the audited set's own story prompts, all answered "the dog ran ." (the
    # cat rows), so only the owl rows' appended sentence is new.
    trusted = data.subset(list(range(N_SUSPECT, N_ROWS)))
    words = paired_words(data, codes, list(range(N_SUSPECT)), trusted, tok)
    assert words.trigger[0].text == "owl" and words.trigger[0].latents == [(HOOK, 1), (HOOK, 2)]
    assert {w.text for w in words.behaviour} == {"you", "should", "visit", "castle"}
    assert not {"the", "dog", "ran"} & {w.text for w in words.behaviour}  # as trusted answers
