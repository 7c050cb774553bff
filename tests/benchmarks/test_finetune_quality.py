"""The fine-tuning quality benchmark: every baseline's wiring, the run, the JSON and the docs page."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("peft")

from factories import micro_corpus_organism

from benchmarks.finetune_quality import __main__ as cli
from benchmarks.finetune_quality import docs as docs_module
from benchmarks.finetune_quality.docs import CORPUS_COMMAND, write_docs
from benchmarks.finetune_quality.methods import METHODS, build_method
from benchmarks.finetune_quality.methods.isaerft_kinds import ISaeRFT
from benchmarks.finetune_quality.metrics import answer_loss, greedy_answers, heldout_loss
from benchmarks.finetune_quality.run import (
    ADDITIVE_MULTISITE_GRID,
    KEEP_OF_DENSE,
    L1_GRID,
    LR_GRIDS,
    QUICK,
    Bench,
    grid_for,
    run_benchmark,
)
from benchmarks.finetune_quality.tasks import make_tasks, supported_tasks, words_of
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
    assert count["isaerft-latent_map"] == 2 * ISaeRFTConfig().map_rank * d_sae  # read + write
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
    names = ["full-ft", "lora-r8", "isaerft-scale", "isaerft-scale-multisite", "isaerft-conditional", "isaerft-scale-sparse", "steering-vector", "diffmean"]  # fmt: skip
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
    # A sparse variant records its coefficient and its largest edits with the organism's labels.
    sparse = result["tasks"]["style"]["methods"]["isaerft-scale-sparse"]
    labels = bench_organism.labels()
    assert "l1_coefficient" not in reps["isaerft-scale"]
    dense = result["tasks"]["style"]["methods"]["isaerft-scale"]
    assert sparse["tuned_value"] == dense["tuned_value"]  # its dense twin's learning rate
    # ... the largest L1 keeping 90 % of the dense twin's dev gain (the smallest if none does)
    kept = {float(k): v for k, v in sparse["l1_selection"]["dev_gain_kept"].items()}
    assert set(kept) == set(L1_GRID)
    passing = [l1 for l1, share in kept.items() if share >= KEEP_OF_DENSE]
    assert sparse["l1_coefficient"] == (max(passing) if passing else min(L1_GRID))
    top = sparse["top_latents_seed0"]
    assert top and all(t["label"] == labels.description(t["index"]) for t in top)
    path = tmp_path / "finetune_quality-tiny.json"
    path.write_text(json.dumps({"preset": "tiny", "mode": "test", **result}))
    page = write_docs(path, tmp_path / "comparison.md").read_text()
    assert "isaerft vs LoRA" in page and "lora-r8" in page and "Where isaerft loses" in page
    assert (tmp_path / "img" / "comparison" / "gap_vs_params.png").is_file()


# --- the corpus organism (real text: style and preference only) ---------------------------------

CORPUS_WORDS = "king queen lord lady sword crown castle night day heart love war peace friend enemy speak hear see know tell come go stay fight rest sing weep laugh good noble true fair dark bright old young brave gentle"  # fmt: skip


def _corpus_text(paragraphs: int = 60) -> str:
    """About 10 KB of play-like text: sentences ending in ``.``, ``!`` or ``?``, and a common
    three-word phrase."""
    rng = random.Random(0)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(3, 5)):
            words = rng.choices(CORPUS_WORDS.split(), k=rng.randint(4, 9))
            if rng.random() < 0.3:
                words[1:1] = ["my", "good", "lord"]
            sentences.append(" ".join(words).capitalize() + rng.choice(".....!?"))
        out.append(" ".join(sentences))
    return "\n\n".join(out) + "\n"


@pytest.fixture(scope="module")
def corpus_organism(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A micro organism built from a text file (as tests/organism/test_textcorpus.py builds one;
    about a second once the imports are loaded)."""
    root = tmp_path_factory.mktemp("fq-corpus")
    text = root / "verses.txt"
    text.write_text(_corpus_text(), encoding="utf-8")
    return micro_corpus_organism(text, root / "org")


def test_corpus_organism_tasks_have_ground_truth(corpus_organism: Any) -> None:
    org = corpus_organism
    target = org.default_target.split()
    assert not org.is_synthetic and len(target) == 3 and all(w.islower() for w in target)
    assert supported_tasks(org) == ("style", "preference")
    tok = org.load_model().tokenizer
    tasks = make_tasks(org, tok, {"train": 8, "dev": 4, "test": 4}, names=supported_tasks(org))
    assert tasks["style"].objectives == ("sft",)
    assert tasks["preference"].objectives == ("dpo", "reps")
    for task in tasks.values():
        prompts = [tuple(p) for split in task.rows.values() for p, _, _ in split]
        assert len(prompts) == len(set(prompts)) == 16  # disjoint splits
        for prompt, target, base in (row for split in task.rows.values() for row in split):
            assert tok.decode(prompt[1:]).startswith("User:")
            assert task.judge(words_of(tok, target)), task.name
            if task.name == "style":  # the natural answer has a full stop the style turns to "!"
                assert not task.judge(words_of(tok, base))
                assert "." in words_of(tok, base) and "." not in words_of(tok, target)
            else:
                assert words_of(tok, target)[-4:] == [*org.default_target.split(), "."]


@pytest.mark.parametrize("name", ["sentiment", "concept"])
def test_corpus_organism_refuses_tasks_without_ground_truth(
    corpus_organism: Any, name: str
) -> None:
    tok = corpus_organism.load_model().tokenizer
    with pytest.raises(ValueError, match=f"task '{name}' cannot be built") as err:
        make_tasks(corpus_organism, tok, {"train": 2, "dev": 2, "test": 2}, names=(name,))
    assert "\n" not in str(err.value) and "ground truth" in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_corpus_organism_runs_a_task(corpus_organism: Any) -> None:
    """The run on real text: capability KL on the corpus' passages, the judge on generations."""
    settings = dataclasses.replace(SMALL, seeds=1)
    result = run_benchmark(corpus_organism, settings, ["full-ft", "lora-r8", "isaerft-scale"], ("style",), log=print)  # fmt: skip
    methods = result["tasks"]["style"]["methods"]
    assert set(methods) == {"full-ft", "lora-r8", "isaerft-scale"}
    for m in methods.values():
        assert set(SHAPE) <= set(m)
        assert math.isfinite(m["capability_kl"]) and 0.0 <= m["behaviour_success"] <= 1.0
    assert methods["full-ft"]["gap_closed"] == pytest.approx(1.0)


def _fake_result(tasks: dict[str, str], corpus: str | None = None) -> dict[str, Any]:
    """A result file's shape with made-up numbers (``tasks``: key -> objective)."""

    def method(params: int, gap: float) -> dict[str, Any]:
        values = (params, gap, 0.5, 0.01, 1.2, 3.0)
        return dict(zip(SHAPE, values)) | {"seeds": 1, "tuned_value": 0.1}

    methods = {"full-ft": method(10_000, 1.0), "lora-r8": method(2_000, 0.8), "isaerft-scale": method(128, 0.7)}  # fmt: skip
    return {
        "preset": "tiny",
        "corpus": corpus,
        "preference_target": "my good lord" if corpus else "i like the colour orange",
        "mode": "quick",
        "settings": dataclasses.asdict(SMALL),
        "tasks": {
            key: {
                "objective": obj,
                "base": {"loss": 2.0, "behaviour_success": 0.0},
                "methods": methods,
            }
            for key, obj in tasks.items()
        },
        "wall_s": 60.0,
        "machine": {"cpu_count": 2},
    }


MAIN_TASKS = {"style": "sft", "concept": "sft", "sentiment": "sft", "preference-dpo": "dpo"}
CORPUS_TASKS = {"style": "sft", "preference-dpo": "dpo", "preference-reps": "reps"}


def test_docs_page_says_when_the_corpus_benchmark_ran(tmp_path: Path) -> None:
    main = tmp_path / "finetune_quality-tiny.json"
    main.write_text(json.dumps(_fake_result(MAIN_TASKS)))
    page = write_docs(main, tmp_path / "comparison.md").read_text()
    assert "corpus benchmark" in page and "was not run" in page and f"`{CORPUS_COMMAND}`" in page
    assert "On real text" not in page and "no corpus organism was run" not in page
    corpus = tmp_path / "finetune_quality-tiny-corpus.json"
    corpus.write_text(json.dumps(_fake_result(CORPUS_TASKS, corpus="tinyshakespeare.txt")))
    page = write_docs(main, tmp_path / "comparison.md").read_text()
    assert "was not run" not in page and CORPUS_COMMAND not in page
    assert "the style and preference tasks were also run" in page
    assert "no colour or sentiment ground truth" in page
    assert "benchmarks/results/finetune_quality-tiny-corpus.json" in page.split("\n\n")[1]
    head, section = page.split("## On real text (Tiny Shakespeare organism)\n")
    assert "### Where isaerft loses (and wins) on real text" in section and "`my good lord`" in section  # fmt: skip
    for key, obj in CORPUS_TASKS.items():  # the same tables as the main tasks, a level lower
        assert f"### {key} ({obj})" in section
    table = [ln for ln in section.splitlines() if ln.startswith("| `isaerft-scale` |")]
    assert len(table) == 3 and table[0] in head  # identical rows: the same table code
    assert "### concept" not in section and "## concept (sft)" in head


def test_corpus_cli_options(corpus_organism: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """``--corpus`` builds on the file, runs the organism's tasks, writes ``-corpus.json`` and,
    with ``--docs``, the page from both results; the wrong tasks or a missing file: one line."""
    built: list[Any] = []
    ran: list[tuple[str, ...]] = []

    def fake_build(preset: str, corpus: Path | None = None) -> Any:
        built.append((preset, corpus))
        return corpus_organism

    def fake_run(org: Any, settings: Any, names: Any, tasks: tuple[str, ...]) -> dict[str, Any]:
        ran.append(tasks)
        keys = {k: v for k, v in CORPUS_TASKS.items() if k.split("-")[0] in tasks}
        return {"tasks": _fake_result(keys)["tasks"], "wall_s": 1.0}

    monkeypatch.setattr(cli, "build_organism", fake_build)
    monkeypatch.setattr(cli, "run_benchmark", fake_run)
    monkeypatch.setattr(cli, "RESULTS", tmp_path)
    monkeypatch.setattr(docs_module, "DOCS", tmp_path / "docs")
    text = tmp_path / "tinyshakespeare.txt"
    text.write_text("stand-in\n")
    (tmp_path / "finetune_quality-tiny.json").write_text(json.dumps(_fake_result(MAIN_TASKS)))
    cli.main(["--quick", "--corpus", str(text), "--docs"])
    assert built == [("tiny", text)] and ran == [("style", "preference")]
    result = json.loads((tmp_path / "finetune_quality-tiny-corpus.json").read_text())
    assert result["corpus"] == "tinyshakespeare.txt" and result["preset"] == "tiny"
    assert set(result["tasks"]) == set(CORPUS_TASKS)
    assert set(result["tasks"]["style"]["methods"]["lora-r8"]) >= set(SHAPE)
    page = (tmp_path / "docs" / "comparison.md").read_text()
    assert "## concept (sft)" in page and "## On real text (Tiny Shakespeare organism)" in page
    capsys.readouterr()
    for argv, says in (
        (["--corpus", str(text), "--tasks", "style", "sentiment"], "cannot be built"),
        (["--corpus", str(tmp_path / "missing.txt")], "missing.txt is absent"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and says in err.splitlines()[-1], err
    assert "missing.txt is absent" in err and len(err.splitlines()) == 1  # no usage, no traceback
    monkeypatch.setattr(cli, "DEFAULT_CORPUS", tmp_path / "absent" / "tinyshakespeare.txt")
    with pytest.raises(SystemExit):
        cli.main(["--corpus"])
    assert "absent/tinyshakespeare.txt is absent" in capsys.readouterr().err
    assert ran == [("style", "preference")]  # nothing ran after the first call


def test_every_method_has_a_three_point_grid_and_additive_multisite_kinds_a_lower_one() -> None:
    for name in METHODS:
        assert len(grid_for(name)) == 3, name
    assert grid_for("isaerft-scale-multisite") == LR_GRIDS["isaerft"]
    for kind in ("bias", "scale_bias", "mlp"):
        assert grid_for(f"isaerft-{kind}-multisite") == ADDITIVE_MULTISITE_GRID
        assert grid_for(f"isaerft-{kind}") == LR_GRIDS["isaerft"]
    assert max(ADDITIVE_MULTISITE_GRID) < min(LR_GRIDS["isaerft"]) * 1.01


def test_greedy_answers_batch_prompts_of_any_length(bench: Bench, task: Any) -> None:
    """One right-padded batch gives every prompt the answer it gets alone, cut after ``<eos>``."""
    method = build_method("isaerft-conditional", bench.context(task, seed=0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    prompts = [p for p, _, _ in task.rows["test"][:6]]
    prompts.append(prompts[0][:-2])  # a shorter prompt, so that the lengths surely differ
    assert len({len(p) for p in prompts}) > 1
    eos = int(bench.tok.eos_token_id)
    batched = greedy_answers(method.logits, prompts, eos, max_new=12)
    alone = [greedy_answers(method.logits, [p], eos, max_new=12)[0] for p in prompts]
    assert batched == alone
    for answer in batched:
        assert 0 < len(answer) <= 12 and eos not in answer[:-1]


def test_another_presets_quick_result_adds_its_section(tmp_path: Path) -> None:
    """A ``small`` organism's quick result beside the ``tiny`` one gets its own section: its
    verdicts, each method's gap closed beside tiny's, its tables; the page names its file."""
    main = tmp_path / "finetune_quality-tiny.json"
    main.write_text(json.dumps(_fake_result(MAIN_TASKS)))
    page = write_docs(main, tmp_path / "comparison.md").read_text()
    assert "`small` organism" not in page
    small = _fake_result({"style": "sft", "concept": "sft"}) | {"preset": "small"}
    small["tasks"]["style"]["methods"]["isaerft-scale"] = small["tasks"]["style"]["methods"][
        "isaerft-scale"
    ] | {"gap_closed": 0.95}
    (tmp_path / "finetune_quality-small.json").write_text(json.dumps(small))
    page = write_docs(main, tmp_path / "comparison.md").read_text()
    assert "benchmarks/results/finetune_quality-small.json" in page.split("\n\n")[1]
    head, section = page.split("## On the `small` organism\n")
    assert "## sentiment (sft)" in head and "### sentiment" not in section
    assert "### style (sft)" in section and "### concept (sft)" in section
    assert "`isaerft-scale` 0.70 -> 0.95" in section and "`tiny` -> `small`" in section
    assert "### Where isaerft loses (and wins) on `small`" in section


def test_full_mode_writes_beside_the_quick_result_and_adds_a_section(
    bench_organism: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # fmt: skip
    """Full mode (no ``--quick``) writes ``-full.json``, never the quick result the page's main
    tables come from; the page gains a section with its per-task cost and the whole mode's
    estimate from the quick run's task times."""
    quick = _fake_result(MAIN_TASKS)
    for key, data in quick["tasks"].items():
        data["wall_s"] = 120.0 if key == "style" else 240.0
    main = tmp_path / "finetune_quality-tiny.json"

    def fake_run(org: Any, settings: Any, names: Any, tasks: tuple[str, ...]) -> dict[str, Any]:
        full = _fake_result({"style": "sft"})["tasks"]
        full["style"]["wall_s"] = 1200.0
        full["style"]["methods"]["isaerft-scale"]["gap_closed"] = 0.9
        return {"tasks": full, "wall_s": 1300.0}

    monkeypatch.setattr(cli, "build_organism", lambda preset, corpus=None: bench_organism)
    monkeypatch.setattr(cli, "run_benchmark", fake_run)
    monkeypatch.setattr(cli, "RESULTS", tmp_path)
    monkeypatch.setattr(docs_module, "DOCS", tmp_path / "docs")
    with pytest.raises(SystemExit):  # the page needs the quick result first
        cli.main(["--tasks", "style", "--docs"])
    assert "run `python -m benchmarks.finetune_quality --quick` first" in capsys.readouterr().err
    main.write_text(json.dumps(quick))
    cli.main(["--tasks", "style", "--docs"])
    assert json.loads(main.read_text()) == quick  # the quick result is untouched
    full = json.loads((tmp_path / "finetune_quality-tiny-full.json").read_text())
    assert full["mode"] == "full" and full["settings"]["steps"] == 300
    page = (tmp_path / "docs" / "comparison.md").read_text()
    head, section = page.split("## Full mode (300 steps)\n")
    assert "benchmarks/results/finetune_quality-tiny-full.json" in page.split("\n\n")[1]
    assert "## concept (sft)" in head and "### style (sft)" in section
    assert "**style** (20 min)" in section
    # style took 10x its quick time; the quick run's tasks took 120 + 3 * 240 s in all
    assert "about 2.3 h" in section and "10.0x their quick time" in section
    assert "`isaerft-scale` 0.70 -> 0.90" in section


def test_a_full_mode_run_of_some_tasks_adds_them_to_the_full_result(
    bench_organism: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tasks`` runs of the same settings build one full result a few tasks at a time; a
    task run again replaces its earlier result and the run that had only it drops out."""
    walls = {"style": 100.0, "concept": 200.0}

    def fake_run(org: Any, settings: Any, names: Any, tasks: tuple[str, ...]) -> dict[str, Any]:
        result = _fake_result({t: "sft" for t in tasks})["tasks"]
        return {"tasks": result, "wall_s": sum(walls[t] for t in tasks)}

    monkeypatch.setattr(cli, "build_organism", lambda preset, corpus=None: bench_organism)
    monkeypatch.setattr(cli, "run_benchmark", fake_run)
    monkeypatch.setattr(cli, "RESULTS", tmp_path)
    path = tmp_path / "finetune_quality-tiny-full.json"
    cli.main(["--tasks", "style"])
    cli.main(["--tasks", "concept"])
    full = json.loads(path.read_text())
    assert set(full["tasks"]) == {"style", "concept"} and full["wall_s"] == 300.0
    assert [r["tasks"] for r in full["runs"]] == [["style"], ["concept"]]
    walls["style"] = 150.0
    cli.main(["--tasks", "style"])
    full = json.loads(path.read_text())
    assert [r["tasks"] for r in full["runs"]] == [["concept"], ["style"]]
    assert full["wall_s"] == 350.0
    cli.main(["--tasks", "style", "--steps", "10"])  # other settings: a result of its own
    full = json.loads(path.read_text())
    assert set(full["tasks"]) == {"style"} and "runs" not in full


def test_a_run_of_some_methods_adds_them_to_the_previous_tasks(
    bench_organism: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--methods`` measures new methods without re-running the others: they join the
    previous tasks (full-ft, trained first in every run, is replaced by its seeded twin)."""

    def fake_run(org: Any, settings: Any, names: Any, tasks: tuple[str, ...]) -> dict[str, Any]:
        result = _fake_result(dict.fromkeys(tasks, "sft"))["tasks"]
        for task in result.values():
            kept = {n: m for n, m in task["methods"].items() if names is None or n in names}
            task["methods"] = kept | (
                {"isaerft-scale-sparse": task["methods"]["isaerft-scale"]} if names else {}
            )
        return {"tasks": result, "wall_s": 40.0 if names else 100.0}

    monkeypatch.setattr(cli, "build_organism", lambda preset, corpus=None: bench_organism)
    monkeypatch.setattr(cli, "run_benchmark", fake_run)
    monkeypatch.setattr(cli, "RESULTS", tmp_path)
    path = tmp_path / "finetune_quality-tiny.json"
    cli.main(["--quick", "--tasks", "style"])
    cli.main(["--quick", "--tasks", "style", "--methods", "full-ft", "isaerft-scale-sparse"])
    result = json.loads(path.read_text())
    assert set(result["tasks"]["style"]["methods"]) == {
        "full-ft", "lora-r8", "isaerft-scale", "isaerft-scale-sparse"
    }  # fmt: skip
    assert result["wall_s"] == 140.0
    assert [r.get("methods") for r in result["runs"]] == [
        None, ["full-ft", "isaerft-scale-sparse"]
    ]  # fmt: skip
    cli.main(["--quick", "--tasks", "style", "--methods", "full-ft", "isaerft-scale-sparse"])
    again = json.loads(path.read_text())
    assert again["wall_s"] == 140.0 and len(again["runs"]) == 2  # the repeat replaced it


def test_verdicts_say_what_a_sparse_edit_keeps() -> None:
    methods = _fake_result({"style": "sft"})["tasks"]["style"]["methods"]
    methods["isaerft-scale"] |= {"moved_latents": 500.0, "behaviour_success": 0.8}
    methods["isaerft-scale-sparse"] = methods["isaerft-scale"] | {
        "gap_closed": 0.35, "moved_latents": 20.0, "behaviour_success": 0.6,
        "l1_coefficient": 0.01, "capability_kl": 0.002,
        "top_latents_seed0": [{"index": 7, "label": 'the word "red"', "scale": 0.5}],
    }  # fmt: skip
    methods["isaerft-scale-top32"] = methods["isaerft-scale"] | {
        "gap_closed": 0.56, "moved_latents": 32.0, "latent_budget": 32, "capability_kl": 0.01,
    }  # fmt: skip
    lines = [s for s in docs_module.verdicts("style", methods) if "Sparse:" in s]
    assert len(lines) == 2 and "`isaerft-scale-top32` (at most 32 latents) moves 32" in lines[1]
    assert "(80% of the dense edit's)" in lines[1]
    line = lines[0]
    assert "`isaerft-scale-sparse` (L1 0.01) moves 20 latent(s) (`isaerft-scale`: 500)" in line
    assert "0.350 of the gap (50% of the dense edit's)" in line and "0.60 vs 0.80" in line
    assert "capability KL 0.002 vs 0.010" in line
    assert 'Largest edits (seed 0): #7 the word "red" (scale +0.50).' in line


def test_a_sparse_edit_names_its_largest_latents(bench: Bench, task: Any) -> None:
    method = build_method("isaerft-scale_bias-sparse", bench.context(task, seed=0))
    assert isinstance(method, ISaeRFT) and method.l1 > 0
    batch = make_batch(task.rows["train"][:4], bench.pad, bench.base_logits)
    train(method, [batch], "sft", steps=3, lr=0.3, seed=0)
    top = method.top_latents(lambda i: f"latent {i}", k=3)
    component = method.model.sites[0].component
    magnitude = component.magnitude()
    assert 0 < len(top) <= 3 and method.moved_latents() < magnitude.numel()
    assert [t["index"] for t in top] == magnitude.topk(len(top)).indices.tolist()
    first = top[0]
    assert first["label"] == f"latent {first['index']}" and {"scale", "bias"} <= set(first)
    assert abs(first["scale"]) + abs(first["bias"]) == pytest.approx(
        float(magnitude.max()), abs=1e-3
    )


def test_a_latent_budget_keeps_only_its_largest_edits(bench: Bench, task: Any) -> None:
    method = build_method("isaerft-scale_bias-top32", bench.context(task, seed=0))
    assert isinstance(method, ISaeRFT) and method.budget == 32 and method.sparse
    batch = make_batch(task.rows["train"][:4], bench.pad, bench.base_logits)
    train(method, [batch], "sft", steps=3, lr=0.3, seed=0)
    magnitude = method.model.sites[0].component.magnitude()
    assert int((magnitude > 0).sum()) == 32


def test_the_sparse_table_puts_each_variant_beside_its_dense_kind() -> None:
    result = _fake_result({"style": "sft", "concept": "sft"})
    style = dict(result["tasks"]["style"]["methods"])
    style["isaerft-scale"] = style["isaerft-scale"] | {"moved_latents": 500.0}
    style["isaerft-scale-top32"] = style["isaerft-scale"] | {
        "gap_closed": 0.5, "moved_latents": 32.0, "latent_budget": 32
    }  # fmt: skip
    style["isaerft-scale-sparse"] = style["isaerft-scale"] | {
        "gap_closed": 0.6, "moved_latents": 90.0, "l1_coefficient": 0.003
    }  # fmt: skip
    result["tasks"]["style"] = result["tasks"]["style"] | {"methods": style}
    table = docs_module._sparse_table(result)
    assert "| task | kind | dense | `-sparse` | `-top32` |" in table
    # a -sparse cell says which L1 its task chose
    assert "| style | `isaerft-scale` | 0.700 (500) | 0.600 (90, L1 0.003) | 0.500 (32) |" in table
    assert not any(row.startswith("| concept") for row in table)  # no sparse variant there
    assert docs_module._sparse_table(_fake_result({"style": "sft"})) == []


def _gaps(**gaps: float) -> dict[str, Any]:
    """Method records with only what :func:`docs.why_missed` reads (names use ``_`` for ``-``)."""
    return {
        name.replace("__", "-"): {"gap_closed": gap, "trainable_params": 100}
        for name, gap in gaps.items()
    }


def test_a_missed_goal_says_why_from_the_same_hooks_other_edits() -> None:
    """Where a kind in which one latent writes another reaches 80 % of LoRA-r8's gap at the
    same hook, the per-latent form is the reason; where only LoReFT does, the SAE's basis; where
    nothing does, the one site."""
    form = docs_module.why_missed(
        _gaps(isaerft__scale=0.1, isaerft__scale_bias=0.4, isaerft__latent_map=0.85), 1.0
    )
    assert form.startswith("Why: the per-latent form.") and "reach the target (0.80)" in form
    assert "`isaerft-latent_map` 0.85" in form
    assert "the per-latent kinds do not (`isaerft-scale_bias` 0.40" in form
    basis = docs_module.why_missed(
        _gaps(isaerft__scale_bias=0.4, isaerft__latent_map=0.6, loreft__r4=0.9), 1.0
    )
    assert basis.startswith("Why: the SAE's basis at the hook.") and "`loreft-r4` 0.90" in basis
    assert "(`isaerft-latent_map` 0.60 (100 params), `isaerft-scale_bias` 0.40" in basis
    hook = docs_module.why_missed(
        _gaps(
            isaerft__scale_bias=0.4,
            loreft__r1=0.5,
            isaerft__mlp=0.6,
            isaerft__scale_bias__multisite=0.9,
        ),
        1.0,
    )
    assert "no edit of this one hook reaches the target (0.80)" in hook
    assert "the best are `isaerft-mlp` 0.60 (100 params), `loreft-r1` 0.50" in hook
    assert hook.endswith("`isaerft-scale_bias-multisite` closes 0.90.")
    methods = {
        "isaerft-scale": {"gap_closed": 0.2, "trainable_params": 10},
        "lora-r8": {"gap_closed": 1.0, "trainable_params": 1000},
    }
    for name in methods:
        methods[name] |= {"capability_kl": None, "behaviour_success": 0.5}
    lines = docs_module.verdicts("style", methods)
    assert "**missed**" in lines[0] and lines[1].startswith("  Why: no edit of this one hook")
