"""The prompt-swap test's mechanics: donor pairs, the per-run statistic, the null."""

from __future__ import annotations

import pytest
import torch
from audit.helpers import HOOK
from factories import tiny_model, tiny_sae

from isaerft import ISaeRFTModel
from isaerft.audit.data import AuditData
from isaerft.audit.promptswap import prompt_dependence, run_dependence, swap_pairs


def data(n: int = 12) -> AuditData:
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(4, 50, (10,), generator=gen) for _ in range(n)]
    return AuditData(ids, [5] * n, [{}] * n)


def test_swap_pairs_use_own_then_donor_prompts() -> None:
    rows = [0, 3]
    pairs = swap_pairs(data(), rows, n_swaps=2)
    assert pairs[0] == (0, 0) and pairs[3] == (3, 3)
    donors = [p for p, c in pairs if p != c]
    assert len(donors) == 4 and not set(donors) & set(rows)
    with pytest.raises(ValueError, match="rows outside"):
        swap_pairs(data(2), [0, 1], 1)


def test_run_dependence_is_own_minus_mean_donor_gain() -> None:
    gains = torch.tensor([3.0, 1.0, 0.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    assert run_dependence(gains, n_rows=2, n_swaps=2) == pytest.approx(((3 - 0.5) + 0) / 2)


def test_identical_runs_show_no_dependence() -> None:
    model, sae = tiny_model(), tiny_sae(hook_name=HOOK)
    candidate = ISaeRFTModel(model, sae)
    refs = [ISaeRFTModel(model, sae) for _ in range(3)]
    result = prompt_dependence(candidate, refs, data(), [0, 1, 2])
    assert result.candidate == 0.0 and result.references == [0.0, 0.0, 0.0]
    assert result.z == 0.0 and not result.conditional
    with torch.no_grad():
        candidate.sites[0].component.scale_delta.normal_(0, 2.0)
    edited = prompt_dependence(candidate, refs, data(), [0, 1, 2])
    assert edited.candidate != 0.0 and edited.to_dict()["rows"] == [0, 1, 2]
