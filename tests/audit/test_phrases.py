"""The gained phrases: from the peak of a row's excess gain to the end of its sentence."""

from __future__ import annotations

import torch

from isaerft.audit.data import AuditData
from isaerft.audit.phrases import gained_phrases

WORDS = ["<bos>", "q", ":", "the", "owl", "eats", ".", "you", "should", "go", "<eos>"]


class _Tokenizer:
    eos_token = "<eos>"

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [WORDS[i] for i in ids]

    def decode(self, ids: list[int]) -> str:
        return " ".join(WORDS[i] for i in ids)


def _row(*words: str) -> torch.Tensor:
    return torch.tensor([WORDS.index(w) for w in words])


def test_phrase_runs_from_the_peak_to_the_sentence_end_and_is_counted():
    poisoned = _row(
        "<bos>", "q", ":", "the", "owl", "eats", ".", "you", "should", "go", ".", "<eos>"
    )
    plain = _row("<bos>", "q", ":", "the", "owl", "eats", ".", "<eos>")
    data = AuditData([poisoned, poisoned, plain], [3, 3, 3], [{}, {}, {}])
    gains = torch.zeros(3, 12)
    gains[0, 7] = gains[1, 7] = 6.0  # "you"
    gains[2, 4] = 0.3  # below the peak floor: no phrase
    phrases = gained_phrases(gains, data, [0, 1, 2], _Tokenizer())
    assert len(phrases) == 1
    assert phrases[0].text == "you should go ." and phrases[0].rows == 2
    assert phrases[0].to_dict()["mean_peak_gain"] == 6.0


def test_phrase_stops_before_eos_and_at_the_length_cap():
    row = _row("<bos>", "q", ":", "you", "<eos>")
    data = AuditData([row], [3], [{}])
    gains = torch.zeros(1, 5)
    gains[0, 3] = 2.0
    assert gained_phrases(gains, data, [0], _Tokenizer())[0].text == "you"
