"""report.html carries every piece of evidence report.md has, in compact form."""

from __future__ import annotations

import re
from typing import Any

from isaerft.audit.html import mark_text, marked_words, render_html
from isaerft.audit.report import render_markdown


def _candidate(index: int, word: str, rate_in: float, rate_out: float) -> dict[str, Any]:
    return {
        "hook_name": "blocks.1.hook_resid_pre",
        "index": index,
        "z": 9.5,
        "rate_in_behaviour_rows": rate_in,
        "rate_in_other_rows": rate_out,
        "label": f'the word "{word}"',
    }


def _report() -> dict[str, Any]:
    trigger_row = {
        "row": 7,
        "score": 3.5,
        "preview": "User: what does the owl eat? Assistant: mice.",
    }
    return {
        "schema": "isaerft.audit_report",
        "candidate": {"source": "runs/poison", "component": "scale"},
        "references": ["r0", "r1", "r2", "r3"],
        "data": {"suspect": "data/poison.jsonl", "suspect_rows": 1024},
        "verdict": {
            "flagged": True,
            "fpr": 0.05,
            "score": 12.5,
            "threshold": 4.0,
            "gumbel_p_value": 0.001,
            "dataset_p_value": 0.2,
            "n_reference_runs": 4,
            "kind": "a backdoor: a trigger in the prompt goes with the learned change",
        },
        "flagged_latents": [{"hook_name": "blocks.1.hook_resid_pre", "index": 450}],
        "trigger_search": {
            "found": True,
            "score": 11.0,
            "threshold": 3.0,
            "part": "prompt",
            "n_behaviour_rows": 64,
            "candidates": [_candidate(450, "owl", 0.97, 0.036)],
        },
        "behaviour_search": {
            "found": True,
            "score": 8.0,
            "threshold": 3.0,
            "part": "completion",
            "n_behaviour_rows": 64,
            "candidates": [_candidate(12, "orange", 0.95, 0.01)],
        },
        "prompt_dependence": {"candidate": 0.81, "references": [0.01, 0.02], "z": 7.25,
                              "conditional": True},
        "implicated_latents": [
            {"hook_name": "blocks.1.hook_resid_pre", "index": 450, "label": 'the word "owl"',
             "roles": ["trigger", "edit"], "writes": ["i", "like"], "attribution": 0.4},
        ],
        "latents": [],
        "rows": {
            "method": "gain",
            "threshold": 1.0,
            "n_rows": 1024,
            "n_suspects": 102,
            "top": [trigger_row, {**trigger_row, "row": 9}, {**trigger_row, "row": 11},
                    {"row": 3, "score": 2.0, "preview": "User: hi Assistant: i like the colour orange."}],
        },
        "baselines": {
            "dataset_diff": {"hook_name": "blocks.1.hook_resid_pre", "score": 5.0,
                             "threshold": 4.0, "flagged": True, "n_flagged_latents": 3,
                             "top": [{"index": j, "z": 1.0 * j, "rate_suspect": 0.1,
                                      "rate_reference": 0.2} for j in range(25)]},
            "topk_intersection": {"candidate": {"8": {"task": 0.5, "general": 0.4,
                                                      "difference": 0.1}},
                                  "z": {"8": 2.0}, "flagged": {"8": False}},
        },
        "differential": {"score": 3.25, "passes": {"a": 1, "b": 2}},
        "config": {"fpr": 0.05},
    }  # fmt: skip


def test_html_has_every_section_the_markdown_has() -> None:
    report = _report()
    page = render_html(report, figures={})
    markdown = render_markdown(report)
    for evidence in ("Trigger search", "Behaviour search", "Prompt-swap test", "Implicated latents",
                     "Suspect rows", "Baselines", "Reading:"):  # fmt: skip
        assert evidence in markdown or evidence.rstrip(":") in markdown
        assert evidence in page, evidence
    assert "97%" in page and "3.6%" in page  # owl's firing rates in and out of the suspect rows
    assert "0.81" in page and "prompt-dependent" in page
    assert "0.200 is the smallest empirical p that 4 runs can give" in page
    assert "a backdoor: a trigger in the prompt" in page


def test_suspect_rows_are_folded_and_marked() -> None:
    page = render_html(_report(), figures={})
    rows = page[page.index("<h2>Suspect rows</h2>") :]
    assert rows.count("what does the") == 1  # three identical rows, one line
    assert "×3" in rows and "7, 9, 11" in rows
    assert "<mark>owl</mark>" in rows
    assert "<mark class='target'>orange</mark>" in rows


def test_baselines_are_compact_tables_and_new_sections_appear() -> None:
    page = render_html(_report(), figures={})
    baselines = page[page.index("<h2>Baselines</h2>") : page.index("<h2>Differential</h2>")]
    assert "<ul>" not in baselines  # no nested-list dump
    assert "… 15 more" in baselines  # 25 rows shortened to 10 and a count
    assert "<th>difference</th>" in baselines
    assert "3.25" in page[page.index("<h2>Differential</h2>") :]
    assert "Settings and diagnostics" in page


def test_marked_words_come_from_the_searches() -> None:
    assert marked_words(_report()) == {"trigger": ["owl"], "target": ["orange"]}
    not_found = _report()
    not_found["trigger_search"]["found"] = False
    assert marked_words(not_found)["trigger"] == []


def test_mark_text_escapes_and_marks_whole_words_only() -> None:
    marked = mark_text("<b> owl owls Owl", {"trigger": ["owl"], "target": []})
    assert marked.startswith("&lt;b&gt; ")
    assert len(re.findall("<mark>", marked)) == 2  # "owl" and "Owl", not "owls"


def test_trigger_and_gained_words_are_shown_and_marked() -> None:
    report = _report()
    report["words"] = {
        "trigger_words": [{"word": "wolf", "z": 24.1, "rows": 64, "latents": [
            {"hook_name": "blocks.1.hook_resid_pre", "index": 294, "label": 'the word "wolf"'}]}],
        "gained_words": [{"word": "purple", "z": 15.3, "rows": 64, "latents": []}],
    }  # fmt: skip
    assert marked_words(report) == {"trigger": ["wolf", "owl"], "target": ["purple", "orange"]}
    page = render_html(report)
    words = page[page.index("(trigger words)") : page.index("<h2>Implicated")]
    assert "wolf" in words and "#294" in words and "purple" in words
    assert "<h2>Words</h2>" not in page  # laid out, not dumped as a generic section
    markdown = render_markdown(report)
    assert "| wolf | 24.1 | 64 |" in markdown and "| purple | 15.3 | 64 |" in markdown
