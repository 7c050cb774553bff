"""The fine-tuning quality benchmark: every baseline's wiring, the run, the JSON and the docs page."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("peft")

from benchmarks.finetune_quality.docs import write_docs
from benchmarks.finetune_quality.methods import METHODS, build_method
from benchmarks.finetune_quality.methods.isaerft_kinds import ISaeRFT
from benchmarks.finetune_quality.metrics import answer_loss, greedy_answers, heldout_loss
from benchmarks.finetune_quality.run import QUICK, Bench, run_benchmark
from benchmarks.finetune_quality.tasks import make_tasks
from benchmarks.finetune_quality.train import (
    logits_loss,
    make_batch,
    objective_loss,
    pad_rows,
    train,
)
from isaerft import ISaeRFTConfig

pytestmark = pytest.mark.slow
SMALL = dataclasses.replace(
    QUICK,
    steps=2,
    train_rows=8,
    dev_rows=4,
    test_rows=4,
    batch_size=4,
    capability_docs=2,
    tune=False,
)
SHAPE = ("trainable_params", "gap_closed", "behaviour_success", "capability_kl", "step_time_over_floor", "peak_mib")  # fmt: skip


@pytest.fixture(scope="module")
def bench(bench_organism: Any, tmp_path_factory: pytest.TempPathFactory) -> Bench:
    return Bench(bench_organism, SMALL, tmp_path_factory.mktemp("fq"), multisite=True)


@pytest.fixture(scope="module")
def task(bench: Bench) -> Any:
    sizes = {"train": 8, "dev": 4, "test": 4}
    return make_tasks(bench.org, bench.tok, sizes, names=("concept",))["concept"]


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_wiring(name: str, bench: Bench, task: Any) -> None:
    tl_before, hf_before = _state(bench.tl), _state(bench.hf)
    method = build_method(name, bench.context(task, seed=0))
    batch = make_batch(task.rows["train"][:4], bench.pad, bench.base_logits)
    tokens = batch.tokens[:4]
    before = method.logits(tokens).detach()
    stats = train(method, [batch], "sft", steps=2, lr=1e-2, seed=0)
    after = method.logits(tokens).detach()
    if name == "diffmean":
        assert method.num_trainable() == 0 and math.isnan(stats.median_step_s)
        assert not torch.allclose(after, bench.base_logits(tokens), atol=1e-4)  # the mean shift
    else:
        assert method.num_trainable() == sum(p.numel() for p in method.parameters()) > 0
        assert stats.median_step_s > 0 and not torch.allclose(before, after)
    if method.supports_factor:  # factor 0 is the base model
        with method.factor(0.0):
            assert torch.allclose(method.logits(tokens), bench.base_logits(tokens), atol=1e-4)
    for ref, now in ((tl_before, bench.tl.state_dict()), (hf_before, bench.hf.state_dict())):
        assert all(torch.equal(ref[k], now[k]) for k in ref), f"{name} changed the base model"


def test_parameter_counts_are_ordered(bench: Bench, task: Any) -> None:
    count = {n: build_method(n, bench.context(task, 0)).num_trainable() for n in METHODS}
    d_model, d_sae = bench.tl.cfg.d_model, bench.sae.cfg.d_sae
    assert count["steering-vector"] == d_model and count["isaerft-scale"] == d_sae
    assert count["loreft-r1"] == 2 * d_model + 1 and count["lora-r1"] < count["lora-r8"]
    assert count["full-ft"] == sum(p.numel() for p in bench.hf.parameters())
    terms = ISaeRFTConfig().conditional_terms  # when, scale, bias per term + always scale, bias
    assert count["isaerft-conditional"] == (3 * terms + 2) * d_sae
    sites = sum(sae.cfg.d_sae for sae in bench.site_saes.values())
    assert len(bench.site_saes) == 3 and count["isaerft-scale-multisite"] == sites


def test_preference_gap_is_measured_on_the_objectives_own_loss(bench: Bench) -> None:
    """The base model is DPO's reference, so its held-out DPO loss is exactly log 2; the
    one-directional RePS loss needs no reference and is the same for every method."""
    task = make_tasks(bench.org, bench.tok, {"train": 4, "dev": 4, "test": 4}, names=("preference",))["preference"]  # fmt: skip
    batches = [make_batch(task.rows["test"], bench.pad, bench.base_logits)]
    assert heldout_loss(bench.base_logits, batches, "dpo") == pytest.approx(math.log(2), abs=1e-5)
    assert heldout_loss(bench.base_logits, batches, "sft") == pytest.approx(
        answer_loss(bench.base_logits, batches)
    )
    method = build_method("isaerft-scale", bench.context(task, seed=0))
    train(method, batches, "reps", steps=3, lr=0.1, seed=0)  # bidirectional in training
    reps = heldout_loss(method.logits, batches, "reps")
    with torch.no_grad():
        assert reps == pytest.approx(float(logits_loss(method.logits, batches[0], "reps")))
    assert reps != pytest.approx(float(objective_loss(method, batches[0], "reps").detach()))


def test_conditional_kind_sees_the_whole_context(bench: Bench, task: Any) -> None:
    """``isaerft-conditional`` gates on latents that fired at earlier positions: right padding,
    the factor and greedy generation (no KV cache) must all keep each position's full prefix."""
    method = build_method("isaerft-conditional", bench.context(task, seed=0))
    assert isinstance(method, ISaeRFT)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an edit whose gates open on real text
        for p in method.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    (prompt, answer, _), (other, *_) = task.rows["test"][:2]
    row = torch.tensor([prompt + answer])
    alone = method.logits(row)
    assert not torch.allclose(alone, bench.base_logits(row), atol=1e-3)
    width = max(row.shape[1], len(other)) + 3  # padded after the row, as the batches are
    batch, _ = pad_rows(
        [row[0].tolist(), other], [[True] * row.shape[1], [True] * len(other)], bench.pad
    )
    batch = torch.cat([batch, torch.full((2, width - batch.shape[1]), bench.pad)], dim=1)
    torch.testing.assert_close(
        method.logits(batch)[:1, : row.shape[1]], alone, atol=1e-4, rtol=1e-4
    )
    with method.factor(-1.0):
        negated = method.logits(row)
    with method.model.edit_factor(-1.0):
        torch.testing.assert_close(negated, method.model(row, return_type="logits"))
    eos = int(bench.tok.eos_token_id)
    ours = greedy_answers(method.logits, [prompt], eos, max_new=8)[0]
    theirs = method.model.generate(
        torch.tensor([prompt]), max_new_tokens=8, do_sample=False, stop_at_eos=True,
        eos_token_id=eos, verbose=False,
    )[0, len(prompt) :].tolist()  # fmt: skip
    assert ours == theirs[: len(ours)] and len(ours) > 0


def test_run_writes_the_issue_shape_and_docs(bench_organism: Any, tmp_path: Path) -> None:
    names = ["full-ft", "lora-r8", "isaerft-scale", "isaerft-scale-multisite", "isaerft-conditional", "steering-vector", "diffmean"]  # fmt: skip
    tuned = dataclasses.replace(SMALL, tune=True)  # tunes, and reuses the best seed-0 run
    result = run_benchmark(bench_organism, tuned, names, ("style", "preference"), log=print)
    assert set(result["tasks"]) == {"style", "preference-dpo", "preference-reps"}
    for data in result["tasks"].values():
        assert set(data["methods"]) == set(names)
        for m in data["methods"].values():
            assert set(SHAPE) <= set(m) and isinstance(m["trainable_params"], int)
        assert data["methods"]["full-ft"]["gap_closed"] == pytest.approx(1.0)
        assert data["methods"]["diffmean"]["tuned_value"] in (0.5, 1.0, 2.0)
    reps = result["tasks"]["preference-reps"]["methods"]
    assert (
        reps["isaerft-scale"]["suppression"] is not None and reps["lora-r8"]["suppression"] is None
    )
    # The context-reading kind goes through every metric (generation without a KV cache too).
    conditional = reps["isaerft-conditional"]
    assert conditional["suppression"] is not None and conditional["moved_latents"] >= 0
    assert math.isfinite(conditional["behaviour_success"]) and conditional["peak_mib"] > 0
    path = tmp_path / "finetune_quality-tiny.json"
    path.write_text(json.dumps({"preset": "tiny", "mode": "test", **result}))
    page = write_docs(path, tmp_path / "comparison.md").read_text()
    assert "isaerft vs LoRA" in page and "lora-r8" in page and "Where isaerft loses" in page
    assert (tmp_path / "img" / "comparison" / "gap_vs_params.png").is_file()
