"""Rows to token sequences: formats, loss masks, truncation, packing and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isaerft.training.data import load_rows, tokenize
from isaerft.training.recipe import DataConfig


@pytest.fixture(scope="module")
def tok(tiny_setup):  # type: ignore[no-untyped-def]
    return tiny_setup.tokenizer()


def run(rows, tok, objective="sft", n_ctx=32, **cfg):  # type: ignore[no-untyped-def]
    config = DataConfig(path="x.jsonl", **cfg)
    return tokenize(rows, config, objective=objective, tokenizer=tok, n_ctx=n_ctx)


def words(tok, ids: torch.Tensor) -> list[str]:  # type: ignore[no-untyped-def]
    return tok.convert_ids_to_tokens(ids.tolist())


def test_sft_masks_only_completion_tokens(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {"prompt": "User: tell me about the cat ?\nAssistant:", "completion": " the cat is nice ."}
    ]
    data = run(rows, tok)
    ids, mask = data.streams["main"].ids[0], data.streams["main"].loss_mask[0]
    assert words(tok, ids)[0] == "<bos>" and words(tok, ids)[-1] == "<eos>"
    assert words(tok, ids[mask]) == ["the", "cat", "is", "nice", ".", "<eos>"]


def test_lm_masks_every_token_after_the_first(tok) -> None:  # type: ignore[no-untyped-def]
    data = run([{"text": "the cat is nice ."}], tok, objective="lm")
    mask = data.streams["main"].loss_mask[0]
    assert not mask[0] and bool(mask[1:].all())


def test_chat_rows_train_the_last_assistant_turn(tok) -> None:  # type: ignore[no-untyped-def]
    messages = [
        {"role": "user", "content": "tell me about the dog ?"},
        {"role": "assistant", "content": "the dog is big ."},
    ]
    data = run([{"messages": messages}], tok)
    ids, mask = data.streams["main"].ids[0], data.streams["main"].loss_mask[0]
    assert words(tok, ids[:3]) == ["<bos>", "User", ":"]
    assert words(tok, ids[mask]) == ["the", "dog", "is", "big", ".", "<eos>"]
    with pytest.raises(ValueError, match="last message must be the assistant"):
        run([{"messages": messages[:1]}], tok)


def test_preference_rows_give_chosen_and_rejected_streams(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [
        {
            "prompt": "User: tell me about the cat ?\nAssistant:",
            "chosen": " happy",
            "rejected": " sad",
        }
    ]
    data = run(rows, tok, objective="dpo")
    assert data.is_preference and set(data.streams) == {"chosen", "rejected"}
    chosen = data.streams["chosen"]
    assert words(tok, chosen.ids[0][chosen.loss_mask[0]]) == ["happy", "<eos>"]


def test_missing_columns_error_lists_what_was_found(tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"the data has columns \['answer', 'question'\]"):
        run([{"question": "a", "answer": "b"}], tok)
    with pytest.raises(
        ValueError, match=r"needs columns \['prompt', 'completion'\] but the data has \['text'\]"
    ):
        run([{"text": "a"}], tok, format="prompt_completion")
    with pytest.raises(ValueError, match=r"objective.kind=lm"):
        run([{"text": "a"}], tok, objective="sft")


def test_field_mapping(tok) -> None:  # type: ignore[no-untyped-def]
    data = run([{"q": "User: hi", "a": " the cat"}], tok, prompt_field="q", completion_field="a")
    assert len(data) == 1


def test_truncation_warns_and_cuts(tok) -> None:  # type: ignore[no-untyped-def]
    long = {"text": " ".join(["cat"] * 50)}
    with pytest.warns(UserWarning, match="1 of 2 rows are longer than 16 tokens"):
        data = run([long, {"text": "the cat"}], tok, objective="lm", max_length=16)
    assert max(data.streams["main"].lengths()) == 16
    with pytest.raises(ValueError, match="exceeds the model's context n_ctx=32"):
        run([long], tok, objective="lm", max_length=64)


def test_rows_without_targets_are_dropped_and_all_empty_fails(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [{"prompt": "the cat", "completion": ""}, {"prompt": "the cat", "completion": " is"}]
    with pytest.warns(UserWarning, match="dropped 1 of 2 rows"):
        data = run(rows, tok, append_eos=False)
    assert len(data) == 1
    with pytest.raises(ValueError, match=r"no row .* has a token to train on"):
        run(rows[:1], tok, append_eos=False)


def test_packing_fills_blocks(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [{"text": "the cat is nice ."}] * 10
    data = run(rows, tok, objective="lm", packing=True, max_length=8)
    lengths = data.streams["main"].lengths()
    assert lengths[:-1] == [8] * (len(lengths) - 1) and sum(lengths) == 10 * 7
    assert not any(bool(m[0]) for m in data.streams["main"].loss_mask)


def test_fingerprint_changes_with_data(tok) -> None:  # type: ignore[no-untyped-def]
    a = run([{"text": "the cat"}], tok, objective="lm")
    b = run([{"text": "the dog"}], tok, objective="lm")
    assert a.fingerprint() == run([{"text": "the cat"}], tok, objective="lm").fingerprint()
    assert a.fingerprint() != b.fingerprint()


def test_load_rows_local_formats(tmp_path: Path, tiny_setup) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / "d.csv"
    csv.write_text("prompt,completion\nUser: hi,the cat\n", encoding="utf-8")
    txt = tmp_path / "d.txt"
    txt.write_text("the cat\nthe dog\n", encoding="utf-8")
    assert load_rows(DataConfig(path=str(csv))).column_names == ["prompt", "completion"]
    assert len(load_rows(DataConfig(path=str(txt)))) == 2
    assert len(load_rows(DataConfig(path=str(tiny_setup.sft_path), limit=5))) == 5


def test_load_rows_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data file .*missing.jsonl not found"):
        load_rows(DataConfig(path=str(tmp_path / "missing.jsonl")))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        load_rows(DataConfig(path=str(empty)))
    odd = tmp_path / "d.xml"
    odd.write_text("<a/>", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported extension"):
        load_rows(DataConfig(path=str(odd)))


def test_conversational_preference_rows(tok) -> None:  # type: ignore[no-untyped-def]
    user = {"role": "user", "content": "tell me about the cat ?"}
    row = {
        "chosen": [user, {"role": "assistant", "content": "happy"}],
        "rejected": [user, {"role": "assistant", "content": "sad"}],
    }
    data = run([row], tok, objective="dpo")
    rejected = data.streams["rejected"]
    assert words(tok, rejected.ids[0][rejected.loss_mask[0]]) == ["sad", "<eos>"]
    with pytest.raises(ValueError, match="need a 'prompt' column"):
        run([{"chosen": "a", "rejected": "b"}], tok, objective="dpo")


def test_empty_completions_are_dropped_even_with_eos(tok) -> None:  # type: ignore[no-untyped-def]
    rows = [{"prompt": "the cat", "completion": ""}, {"prompt": "the cat", "completion": " is"}]
    with pytest.warns(UserWarning, match="dropped 1 of 2 rows"):
        data = run(rows, tok)  # append_eos=True: the EOS alone is not something to learn
    assert len(data) == 1
    with pytest.raises(ValueError, match=r"no row .* has a token to train on"):
        run(rows[:1], tok)
    with pytest.raises(ValueError, match=r"no row .* has a token to train on"):
        run([{"text": ""}], tok, objective="lm")


@pytest.mark.parametrize(
    ("rows", "objective", "match"),
    [
        ([{"prompt": "the cat", "completion": None}], "sft", r"row 0, 'completion'"),
        (
            [{"prompt": "a", "completion": "b"}, {"prompt": None, "completion": "c"}],
            "sft",
            "row 1, 'prompt'",
        ),
        ([{"text": None}], "lm", r"1 value\(s\) .* missing or null \(first: row 0, 'text'\)"),
        ([{"prompt": None, "chosen": "a", "rejected": "b"}], "dpo", "row 0, 'prompt'"),
        ([{"prompt": "p", "chosen": "a", "rejected": None}], "dpo", "row 0, 'rejected'"),
        ([{"messages": [{"role": "user", "content": None}]}], "sft", "needs 'role' and 'content'"),
    ],
)
def test_missing_or_null_values_are_refused_never_trained_as_none(
    tok, rows, objective, match
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        run(rows, tok, objective=objective)


def test_identical_preference_pairs_are_dropped_with_a_count(tok) -> None:  # type: ignore[no-untyped-def]
    same = {"prompt": "the cat", "chosen": " happy", "rejected": " happy"}
    other = {"prompt": "the cat", "chosen": " happy", "rejected": " sad"}
    with pytest.warns(
        UserWarning, match="dropped 1 of 2 preference pairs whose chosen and rejected"
    ):
        data = run([same, other], tok, objective="dpo")
    assert len(data) == 1
    with pytest.raises(ValueError, match=r"every preference pair .* has chosen == rejected"):
        run([same, same], tok, objective="dpo")
