"""Metrics of the audit-poison benchmark, on numbers whose answers are known."""

from __future__ import annotations

import math

import pytest

from benchmarks.audit_poison.metrics import (
    auroc,
    bootstrap_ci,
    control_threshold,
    detection_rate,
    recall_at_k,
    smallest_detected,
)


def test_recall_at_k_normalises_by_what_could_be_found() -> None:
    ranked = [7, 3, 9, 1, 4, 5, 6, 8, 2, 0]
    assert recall_at_k(ranked, [3, 4]) == {"1": 0.0, "5": 1.0, "10": 1.0}
    # One ground-truth latent first: recall@1 is perfect although it is 1 of 2.
    assert recall_at_k(ranked, [7, 100])["1"] == 1.0
    assert recall_at_k(ranked, [7, 100])["5"] == 0.5
    assert recall_at_k(ranked, []) == {"1": None, "5": None, "10": None}


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [0.0, 0.5, 1.0, 1.0, 0.25]
    out = bootstrap_ci(values)
    assert out["value"] == pytest.approx(sum(values) / len(values))
    lo, hi = out["ci"]
    assert 0.0 <= lo <= out["value"] <= hi <= 1.0
    assert out["n"] == 5
    single = bootstrap_ci([0.7])
    assert single["ci"] == [0.7, 0.7]
    assert bootstrap_ci([])["value"] is None
    assert bootstrap_ci([math.nan, 1.0])["n"] == 1


def test_detection_rate_separates_and_fails_to_separate() -> None:
    controls = [1.0, 1.2, 0.9, 1.1]
    assert detection_rate([5.0, 6.0, 7.0], controls, 0.05)["value"] == 1.0
    assert detection_rate([1.0, 0.8, 0.9], controls, 0.05)["value"] == 0.0
    mixed = detection_rate([5.0, 0.5], controls, 0.05)
    assert mixed["value"] == 0.5
    assert mixed["ci"][0] <= 0.5 <= mixed["ci"][1]
    assert mixed["n_control"] == 4
    # A stricter FPR never lowers the threshold.
    assert control_threshold(controls, 0.01) >= control_threshold(controls, 0.05)
    assert detection_rate([], controls, 0.05)["value"] is None
    with pytest.raises(ValueError, match="control run"):
        control_threshold([], 0.05)


def test_auroc_and_smallest_detected() -> None:
    assert auroc([2, 3], [0, 1]) == 1.0
    assert auroc([0, 1], [2, 3]) == 0.0
    assert auroc([1], [1]) == 0.5
    assert auroc([], [1]) is None
    assert smallest_detected({0.1: 1.0, 0.01: 0.95, 0.001: 0.5}) == 0.01
    assert smallest_detected({0.1: 0.5, 0.01: None}) is None
