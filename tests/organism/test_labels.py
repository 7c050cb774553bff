"""Latent labels: AUROC/precision against brute force, the JSONL format and the query API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isaerft.organism.labels import LatentLabels, label_stats, matrix_path, write_labels


def _brute_auroc(score: torch.Tensor, positive: torch.Tensor) -> float:
    pos, neg = score[positive], score[~positive]
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


@pytest.fixture
def toy() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (2000,), generator=gen)
    feats = torch.relu(
        torch.randn(2000, 12, generator=gen)
        + 0.4 * ids[:, None] * torch.randn(1, 12, generator=gen)
        - 0.8
    )
    feats[feats < 0.2] = 0
    feats[:, 0] = (ids == 3).float() * 2.0  # a perfect detector of class 3
    feats[:, 1] = 0.0  # a dead latent
    return feats, ids


def test_stats_match_brute_force(toy: tuple[torch.Tensor, torch.Tensor]) -> None:
    feats, ids = toy
    names = [f"w{i}" for i in range(6)]
    st = label_stats(feats, ids, names, {"even": [0, 2, 4]}, min_count=1)
    assert st.names == [*(f"word:w{i}" for i in range(6)), "concept:even"]
    for row, name in enumerate(st.names):
        positive = (
            torch.isin(ids, torch.tensor([0, 2, 4])) if "even" in name else ids == int(name[-1])
        )
        for j in range(feats.shape[1]):
            score = feats[:, j]
            assert st.auroc[row, j].item() == pytest.approx(_brute_auroc(score, positive), abs=1e-5)
            fired = score > 0
            if fired.any():
                fp = (fired & positive).sum() / fired.sum()
                wp = score[positive].sum() / score.sum()
                assert st.firing_precision[row, j].item() == pytest.approx(fp.item(), abs=1e-5)
                assert st.precision[row, j].item() == pytest.approx(wp.item(), abs=1e-5)
    assert st.auroc[3, 0] == pytest.approx(1.0) and st.precision[3, 0] == pytest.approx(1.0)
    assert st.auroc[:, 1].eq(0.5).all() and st.firing_rate[1] == 0


def test_rare_words_are_not_labels(toy: tuple[torch.Tensor, torch.Tensor]) -> None:
    feats, ids = toy
    ids = ids.clone()
    ids[:3] = 6  # a class seen 3 times
    st = label_stats(feats, ids, [f"w{i}" for i in range(7)], {}, min_count=5)
    assert "word:w6" not in st.names and "word:w3" in st.names


@pytest.fixture
def written(toy: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> Path:
    feats, ids = toy
    names = ["owl", "cat", "the", "castle", "visit", "you"]
    st = label_stats(feats, ids, names, {"animal": [0, 1]}, min_count=1)
    return write_labels(
        tmp_path / "labels.jsonl",
        st,
        model_id="toy",
        layer="1-res",
        hook_name="blocks.1.hook_resid_pre",
    )


def test_neuronpedia_shape(written: Path) -> None:
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert len(lines) == 12 and matrix_path(written).is_file()
    for j, rec in enumerate(lines):
        assert rec["modelId"] == "toy" and rec["layer"] == "1-res" and rec["index"] == str(j)
        assert isinstance(rec["description"], str) and 0.0 <= rec["score"] <= 1.0
        assert {"auroc", "precision", "firing_rate", "top_labels", "hookName"} <= set(rec)
    assert lines[0]["description"] == 'the word "castle"' and lines[0]["word"] == "castle"
    assert lines[0]["auroc"] == pytest.approx(1.0)
    assert lines[1]["description"].startswith("dead latent") and lines[1]["label"] is None


def test_query_api(written: Path) -> None:
    labels = LatentLabels.load(written)
    assert labels.d_sae == 12
    assert labels.latents_for("castle", min_auroc=0.99) == [0]
    assert labels.latents_for("word:castle", min_auroc=0.99, min_precision=0.9) == [0]
    assert 0 not in labels.latents_for("owl", min_auroc=0.6)
    assert labels.best_latent("castle") == (0, pytest.approx(1.0))
    assert labels.description(0) == 'the word "castle"'
    assert labels.resolve("animal") == "concept:animal"
    assert labels.resolve("owl") == "word:owl"
    with pytest.raises(KeyError):
        labels.resolve("zebra")
    assert not labels.has_label("zebra") and labels.has_label("concept:animal")
    # A phrase stands for its most distinctive word (here "castle": latent 0 detects it exactly).
    assert labels.resolve("you should visit the castle") == "word:castle"
    assert labels.latents_for("visit the castle", min_auroc=0.99, min_precision=0.9) == [0]
    scores = labels.auroc_for("castle")
    assert scores.shape == (12,) and scores[0] == pytest.approx(1.0)


def test_ground_truth_latents_dedicated_first_else_the_best_detector() -> None:
    names = ["word:owl", "word:like", "word:the"]
    auroc = torch.tensor([[0.99, 0.96, 0.5], [0.6, 0.97, 0.9], [0.7, 0.6, 0.55]])
    precision = torch.tensor([[0.6, 0.7, 0.1], [0.1, 0.3, 0.2], [0.9, 0.9, 0.9]])
    records = [{"index": str(j), "description": f"d{j}"} for j in range(3)]
    labels = LatentLabels(records, names, auroc, precision)
    assert labels.ground_truth_latents("owl") == [0, 1]  # dedicated detectors, best first
    # No dedicated detector of "like": its best one counts (the organism's "wanted" latent).
    assert labels.ground_truth_latents("like") == [1]
    assert labels.ground_truth_latents("the") == []  # nothing detects it well enough
