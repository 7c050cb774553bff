"""The null calibration: planted latents are flagged, null candidates are flagged at about the
chosen false-positive rate, and latents that never move in the null need a real move."""

from __future__ import annotations

import pytest
import torch

from isaerft.audit.null import (
    NullConfig,
    compare_to_null,
    dataset_score,
    gumbel_p_value,
    quantile_threshold,
)
from isaerft.audit.runs import RunEdits

HOOK = "blocks.1.hook_resid_pre"
D_SAE = 200
SITES = [{"hook_name": HOOK, "d_sae": D_SAE, "sae_fingerprint": "sha256:x"}]


def run(values: torch.Tensor, name: str = "run", **kinds: torch.Tensor) -> RunEdits:
    edits = {"scale": values, **kinds}
    return RunEdits({HOOK: edits}, SITES, "scale", name)


def noise(gen: torch.Generator, spread: torch.Tensor) -> torch.Tensor:
    return torch.randn(D_SAE, generator=gen) * spread


@pytest.fixture
def spread() -> torch.Tensor:
    # Latents differ in how much they move on clean data; a fifth never fire (never move).
    gen = torch.Generator().manual_seed(1)
    values = torch.rand(D_SAE, generator=gen) * 0.05 + 0.01
    values[:40] = 0.0
    return values


def test_planted_latents_are_flagged_first(spread: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    refs = [run(noise(gen, spread), f"ref{i}") for i in range(8)]
    values = noise(gen, spread)
    values[57] += 0.6
    values[3] += 0.3  # a latent that never moves in the null
    values[120] -= 0.5
    result = compare_to_null(run(values, "cand"), refs)
    assert result.is_flagged
    assert {(f.hook_name, f.index) for f in result.flagged} == {(HOOK, 57), (HOOK, 3), (HOOK, 120)}
    assert result.ranked[0].index == 57 and result.ranked[0].z > 0
    assert next(f for f in result.flagged if f.index == 120).z < 0
    assert result.p_values[HOOK][57] <= result.p_values[HOOK][0]
    assert result.gumbel_p_value < 0.01


def test_false_positive_rate_is_near_nominal(spread: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(2)
    flags = []
    for _trial in range(60):
        refs = [run(noise(gen, spread), f"ref{i}") for i in range(8)]
        flags.append(compare_to_null(run(noise(gen, spread)), refs).is_flagged)
    rate = sum(flags) / len(flags)
    # Nominal 5 %; 60 trials with a Gumbel threshold from 8 runs: allow generous slack.
    assert rate <= 0.15


def test_tiny_move_of_a_never_moving_latent_is_not_flagged(spread: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(3)
    refs = [run(noise(gen, spread), f"ref{i}") for i in range(8)]
    values = noise(gen, spread) * 0.0
    values[5] = 1e-4  # never moves in the null, moves a hair here
    result = compare_to_null(run(values), refs)
    assert (HOOK, 5) not in {(f.hook_name, f.index) for f in result.flagged}
    assert abs(float(result.z[HOOK][5])) < 1.0


def test_several_edit_kinds_take_the_strongest(spread: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(4)
    refs = [run(noise(gen, spread), f"r{i}", bias=noise(gen, spread)) for i in range(6)]
    bias = noise(gen, spread)
    bias[9] += 1.0
    result = compare_to_null(run(noise(gen, spread), bias=bias), refs)
    top = result.ranked[0]
    assert (top.index, top.edit_kind) == (9, "bias")
    assert top.change == pytest.approx(float(bias[9]))


def test_bad_inputs() -> None:
    values = torch.zeros(D_SAE)
    with pytest.raises(ValueError, match="at least 3 reference runs"):
        compare_to_null(run(values), [run(values), run(values)])
    other = RunEdits(
        {HOOK: {"scale": values}}, [{**SITES[0], "sae_fingerprint": "sha256:y"}], "scale", "o"
    )
    with pytest.raises(ValueError, match="different SAE"):
        compare_to_null(run(values), [other] * 3)
    with pytest.raises(ValueError, match="fpr"):
        NullConfig(fpr=1.5)
    with pytest.raises(ValueError, match="threshold_method"):
        NullConfig(threshold_method="magic")


def test_thresholds_and_scores() -> None:
    null = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert quantile_threshold(null, 0.05, "empirical") == pytest.approx(4.8)
    gumbel = quantile_threshold(null, 0.05, "gumbel")
    assert gumbel > 5.0  # extrapolates beyond the largest of five
    assert gumbel_p_value(gumbel, null) == pytest.approx(0.05, abs=1e-9)
    # Far outside the null on either side: no overflow, and the limits are right.
    assert gumbel_p_value(-1e6, null) == 1.0
    assert 0.0 <= gumbel_p_value(1e6, null) < 1e-300
    assert 0.0 < gumbel_p_value(40.0, null) < 1e-12
    scores = torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 2.0]])
    assert dataset_score(scores, 2).tolist() == [4.0, 2.0]
