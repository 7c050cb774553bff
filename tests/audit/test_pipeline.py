"""``audit_runs`` end to end on tiny trained runs: the files, their schema, and bad input."""

from __future__ import annotations

import json
import re

import pytest
from factories import tiny_sae

from isaerft.audit import AuditConfig, NullConfig, audit_runs, read_report
from isaerft.audit.report import SCHEMA, SCHEMA_VERSION
from isaerft.loading import load_model, load_sae


@pytest.fixture(scope="module")
def audited(tiny_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit_out")
    result = audit_runs(
        tiny_runs.candidate,
        tiny_runs.references,
        reference_data=tiny_runs.setup.clean,
        config=AuditConfig(null=NullConfig(fpr=0.05), probe_rows=32, ks=(1, 5)),
        out_dir=out,
    )
    return result, out


def test_report_files_and_schema(audited, tiny_runs) -> None:
    _, out = audited
    report = read_report(out)
    assert report["schema"] == SCHEMA and report["schema_version"] == SCHEMA_VERSION
    for key in ("candidate", "verdict", "null", "latents", "rows", "baselines", "evaluation"):
        assert key in report, key
    assert report["data"]["suspect"] == str(tiny_runs.setup.poison)  # from run.json
    assert len(report["null"]["null_scores"]) == 3
    assert set(report["baselines"]) == {"dataset_diff", "topk_intersection"}
    assert report["rows"]["n_rows"] == 48
    # The association search runs against the trusted rows and votes in the verdict.
    search = report["association_search"]
    assert search is not None and report["verdict"]["association_found"] == search["found"]
    assert search["threshold"] >= 0 and 0 < search["fpr"] < report["verdict"]["fpr"]
    assert search["prompt_words"] == [] and search["answer_words"] == []  # nothing found here
    row = report["latents"][0]
    for key in ("z", "p_value", "edits", "impact", "firing_frequency", "effective_contribution"):
        assert row[key] is not None, key
    assert abs(row["z"]) >= abs(report["latents"][-1]["z"])
    suspects = [json.loads(x) for x in (out / "suspects.jsonl").read_text().splitlines()]
    assert sorted(s["row"] for s in suspects) == list(range(48))
    assert [s["rank"] for s in suspects] == list(range(1, 49))
    assert "# isaerft audit report" in (out / "report.md").read_text()


def test_html_is_self_contained(audited) -> None:
    _, out = audited
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "<script" not in page
    assert "<mark>" in page  # the context view marks the activating token


def test_contexts_mark_the_activating_token(audited) -> None:
    result, _ = audited
    contexts = [c for row in result.latents for c in row.contexts]
    assert contexts
    for c in contexts:
        assert c.marked == f"{c.left}«{c.token}»{c.right}"
        assert c.activation > 0


def test_run_with_another_sae_is_refused(tiny_runs) -> None:
    model = load_model(tiny_runs.setup.model_dir)
    other = tiny_sae("standard", hook_name=tiny_runs.setup.hook, seed=5)
    with pytest.raises(ValueError, match="does not fit the given SAE"):
        audit_runs(tiny_runs.candidate, data=tiny_runs.setup.poison, model=model, saes=[other])


def test_labels_for_another_sae_are_refused(tiny_runs, tmp_path) -> None:
    too_big = tmp_path / "big.jsonl"
    too_big.write_text(
        json.dumps({"modelId": "tiny", "layer": "x", "index": 9999, "description": "a"})
    )
    with pytest.raises(ValueError, match="labels are for another SAE"):
        audit_runs(tiny_runs.candidate, labels=too_big, config=AuditConfig(baselines=False))
    other_model = tmp_path / "other.jsonl"
    other_model.write_text(
        json.dumps({"modelId": "gpt2", "layer": "6", "index": 1, "description": "a"})
    )
    with pytest.raises(ValueError, match="is for model 'gpt2'"):
        audit_runs(tiny_runs.candidate, labels=other_model, config=AuditConfig(baselines=False))


def test_data_without_vocabulary_overlap_is_refused(tiny_runs, tmp_path) -> None:
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(
        "".join(
            json.dumps({"prompt": "Benutzer: wie heißt du?", "completion": " Ich heiße Otto."})
            + "\n"
            for _ in range(4)
        )
    )
    with pytest.raises(ValueError, match="no vocabulary in common"):
        audit_runs(tiny_runs.candidate, tiny_runs.references, data=foreign)


def test_labels_name_the_latents(tiny_runs, tmp_path) -> None:
    sae = load_sae(tiny_runs.setup.sae_dir)
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"modelId": "tiny", "layer": "1-res", "index": str(j), "description": f"L{j}"}
            )
            + "\n"
            for j in range(sae.cfg.d_sae)
        )
    )
    result = audit_runs(tiny_runs.candidate, tiny_runs.references, labels=path,
                        config=AuditConfig(baselines=False, row_score="loss_drop"))  # fmt: skip
    assert all(row.label == f"L{row.index}" for row in result.latents)
    assert result.rows is not None and result.rows.method == "loss_drop"
    flagged = result.report["flagged_latents"]
    assert all(f["label"] == f"L{f['index']}" for f in flagged)
