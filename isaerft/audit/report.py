"""The audit report: a versioned JSON document, its renderings, and every file an audit writes.

``report.json`` is the contract (schema ``isaerft.audit_report``, version
:data:`SCHEMA_VERSION`); ``report.md`` and ``report.html`` are rendered from it alone, so a
report can be re-rendered from its JSON. Top-level keys:

* ``schema``, ``schema_version``, ``isaerft_version``, ``created``
* ``candidate``: source, component kind, site records; ``references``: their sources
* ``differential``: ``{"start_from": {"path", "weights_sha256"}}`` when the runs are deltas
  trained from one trusted start (their edits are then read relative to it), else ``null``
* ``data``: the audited and reference data files and sizes
* ``verdict``: ``flagged`` (bool), ``kind`` (a sentence), ``changes_flagged``,
  ``trigger_found``, ``association_found``, ``prompt_dependent``, dataset ``score``, ``threshold``, ``fpr``, p-values
* ``association_search``: prompt/answer latent pairings of the audited rows beyond the trusted
  rows, found from the data alone (see :mod:`isaerft.audit.association`)
* ``trigger_search``, ``prompt_dependence``: the two tests of whether the change goes with
  the prompt (see :mod:`isaerft.audit.trigger`, :mod:`isaerft.audit.promptswap`)
* ``behaviour_search``: latents enriched in the completions of the most suspect rows
* ``gained_phrases``: the phrases the learned edit made likely in the suspect rows, as text,
  with how many rows carry each (see :mod:`isaerft.audit.phrases`)
* ``gained_tokens``, ``edit_attribution``: what the learned edit made likely on the suspect
  rows, and which latents' edits did it (see :mod:`isaerft.audit.attribution`)
* ``words``: the trigger words and the gained words, each with the latents that read it (see
  :mod:`isaerft.audit.words`)
* ``implicated_latents``: trigger candidates, the words' latents, gained-token latents, edit
  attribution, flagged changes in one ranking (see :mod:`isaerft.audit.implicated`)
* ``null``: the null settings and leave-one-out scores (absent without reference runs)
* ``flagged_latents``: the latents above the per-latent threshold, strongest first
* ``latents``: the per-latent table (see :class:`~isaerft.audit.table.LatentRow`)
* ``distributions``: every latent's ``z`` and edit values, for the plots
* ``rows``: the per-row scores, threshold, suspects (``suspects.jsonl`` holds all rows)
* ``baselines``: ``topk_intersection`` and ``dataset_diff`` results
* ``evaluation``: ground-truth metrics when the data comes with row labels

:func:`write_audit` writes an audit's files (the report plus ``suspects.jsonl``); nothing
else in the audit writes to its folder.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isaerft._io import atomic_write, read_versioned_json, write_json, write_text
from isaerft.audit.association import PAIRED_WORDS, answer_name, prompt_name
from isaerft.audit.context import context_lines
from isaerft.audit.implicated import ROLE_LEGEND, describe_roles
from isaerft.audit.words import WORD_SECTIONS, words_lines
from isaerft.rows import split_row

if TYPE_CHECKING:
    from isaerft.audit.data import AuditData
    from isaerft.audit.rowscores import RowScores

SCHEMA = "isaerft.audit_report"
SCHEMA_VERSION = 7
"""2: implicated latents ranked by evidence (``best_rank``, ``attribution``, ``writes``),
``edit_attribution``; 3: ``gained_phrases``; 4: ``words`` (trigger and gained words with the
latents that read them), implicated entries' ``words`` and roles ``trigger word`` and
``gained`` (the per-latent gained-token ranking, ``behaviour`` before); 5:
``association_search``, ``verdict.association_found`` and the implicated roles ``paired
prompt`` / ``paired answer``; 6: the association search also pairs answer words (a
candidate's ``completion_word``, ``completion_latent`` ``None``) and scores prompt latents
(candidates' ``prompt_score``, the search's ``score``); 7: it also pairs prompt words (a
candidate's ``prompt_word`` and ``prompt_token``, ``prompt_latent`` ``None``), its context
check those words as it checks latents (a check's ``word``, ``latent`` ``None``); the two
searches' ``context`` checks, added under 6, are counted here."""


def new_report() -> dict[str, Any]:
    """An empty report with its schema header filled in."""
    from isaerft import __version__

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "isaerft_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def read_report(path: str | Path) -> dict[str, Any]:
    """Read a ``report.json`` (a file or the folder holding it), checking its schema."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; write a report with isaerft audit")
    return read_versioned_json(
        path,
        kind=SCHEMA,
        version=SCHEMA_VERSION,
        what="an isaerft audit report",
        fix="write the report again with isaerft audit",
        keys=("schema", "schema_version"),
    )


def _p_floor(n_runs: Any) -> str:
    """Why an empirical p of ``1 / (N + 1)`` is not evidence of a weak result."""
    if not isinstance(n_runs, int) or n_runs < 1:
        return ""
    return f"; {1 / (n_runs + 1):.3f} is the smallest empirical p that {n_runs} runs can give"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** (-digits) or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any], images: dict[str, str] | None = None) -> str:
    """The report as Markdown; ``images`` maps figure names to relative image paths."""
    images = images or {}
    out = ["# isaerft audit report", ""]
    cand = report.get("candidate", {})
    data = report.get("data", {})
    out.append(f"- candidate run: `{cand.get('source', '')}` ({cand.get('component', '')} edits)")
    if report.get("references"):
        out.append(f"- reference runs: {len(report['references'])}")
    start = (report.get("differential") or {}).get("start_from")
    if isinstance(start, dict):
        out.append(
            f"- differential: every edit is read as a delta from the start `{start['path']}`"
        )
    if data.get("suspect"):
        out.append(f"- audited data: `{data['suspect']}` ({data.get('suspect_rows')} rows)")
    if data.get("reference"):
        out.append(f"- reference data: `{data['reference']}` ({data.get('reference_rows')} rows)")
    out.append("")
    verdict = report.get("verdict")
    if verdict:
        word = "FLAGGED" if verdict["flagged"] else "not flagged"
        out += [
            "## Verdict",
            "",
            f"**{word}** at a {verdict['fpr']:.0%} false-positive rate: dataset score "
            f"{_fmt(verdict['score'])} vs threshold {_fmt(verdict['threshold'])} "
            f"(Gumbel p = {_fmt(verdict.get('gumbel_p_value'))}, empirical p = "
            f"{_fmt(verdict.get('dataset_p_value'))} from {verdict.get('n_reference_runs')} "
            f"reference runs{_p_floor(verdict.get('n_reference_runs'))}). "
            f"{len(report.get('flagged_latents', []))} latent(s) flagged.",
            "",
            f"Reading: {verdict.get('kind', '')}.",
            "",
        ]
        for key, title, part in (
            ("trigger_search", "Trigger search", "prompts"),
            ("behaviour_search", "Behaviour search", "completions"),
        ):
            search = report.get(key)
            if not search:
                continue
            out.append(
                f"{title} over the {part} of the {search['n_behaviour_rows']} most suspect rows: "
                f"max enrichment {_fmt(search['score'])} vs permutation threshold "
                f"{_fmt(search['threshold'])} ({'found' if search['found'] else 'none found'})."
            )
            for c in search["candidates"][:5]:
                out.append(
                    f"- {c['hook_name']} #{c['index']} {c['label']}: fires in "
                    f"{c['rate_in_behaviour_rows']:.0%} of those {part} vs "
                    f"{c['rate_in_other_rows']:.1%} of the others (z {_fmt(c['z'], 1)})"
                )
            out += [f"- {line}" for line in context_lines(search.get("context"))]
            out.append("")
        out += _association_lines(report.get("association_search"))
        dependence = report.get("prompt_dependence")
        if dependence:
            out += [
                f"Prompt-swap test: the learned gain on those rows' completions drops by "
                f"{_fmt(dependence['candidate'])} nats when their prompts are swapped (reference "
                f"runs: {', '.join(_fmt(v) for v in dependence['references'])}); z "
                f"{_fmt(dependence['z'], 2)} "
                f"({'prompt-dependent' if dependence['conditional'] else 'not prompt-dependent'}).",
                "",
            ]
    phrases = report.get("gained_phrases")
    if phrases:
        out += [
            "## What the edit made likely (gained phrases)",
            "",
            "From the token where the learned edit's excess gain peaks to the end of its "
            "sentence, over the suspect rows:",
            "",
        ]
        for p in phrases:
            out.append(
                f'- "{p["text"]}" in {p["rows"]} rows (gain {_fmt(p["mean_peak_gain"], 2)} '
                "nats at its first token)"
            )
        out.append("")
    words = report.get("words") or {}
    for key, title in WORD_SECTIONS:
        if words.get(key):
            out += [
                f"## {title}",
                "",
                "| word | z | rows | latents that read it |",
                "|---|---|---|---|",
            ]
            for w in words[key]:
                readers = "; ".join(
                    f"{r['hook_name']} #{r['index']} {r['label']}".strip() for r in w["latents"]
                )
                out.append(
                    f"| {_cell(w['word'])} | {_fmt(w['z'], 1)} | {w['rows']} | {_cell(readers)} |"
                )
            out.append("")
    for key, title in (
        ("gained_tokens", "What the edit made likely (gained tokens)"),
        ("edit_attribution", "How the edit does it (edit attribution)"),
    ):
        reading = report.get(key)
        if reading and reading.get("top"):
            out += [f"## {title}", "", f"{reading['method']}.", ""]
            out.append("| site | latent | label | score |")
            out.append("|---|---|---|---|")
            for t in reading["top"][:10]:
                out.append(
                    f"| {t['hook_name']} | {t['index']} | {_cell(t['label'] or '')} | "
                    f"{_fmt(t['score'], 3)} |"
                )
            out.append("")
    implicated = report.get("implicated_latents")
    if implicated:
        out += ["## Implicated latents", ""]
        out.append(f"Roles: {ROLE_LEGEND}. `writes`: the tokens the latent promotes.")
        out.append("")
        out.append("| # | site | latent | label | writes | roles | edit attribution |")
        out.append("|---|---|---|---|---|---|---|")
        for rank, e in enumerate(implicated[:15], start=1):
            out.append(
                f"| {rank} | {e['hook_name']} | {e['index']} | {_cell(e['label'] or '')} | "
                f"{_cell(' '.join(e.get('writes') or []))} | {_cell(describe_roles(e))} | "
                f"{_fmt(e['attribution'], 3) if e.get('attribution') is not None else ''} |"
            )
        out.append("")
    for name, title in (("top_latents", "Top latents"), ("changes", "Distribution of changes")):
        if name in images:
            out += [f"![{title}]({images[name]})", ""]
    latents = report.get("latents", [])
    if latents:
        out += ["## Latents", ""]
        out.append(
            "| site | latent | label | z | p | flagged | edit | impact | freq | mean act | effective |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for row in latents:
            edits = ", ".join(f"{k} {_fmt(v)}" for k, v in row["edits"].items())
            out.append(
                f"| {row['hook_name']} | {row['index']} | {_cell(row['label'] or '')} | "
                f"{_fmt(row['z'], 2)} | {_fmt(row['p_value'])} | {_fmt(row['flagged'])} | "
                f"{edits} | {_fmt(row['impact'])} | {_fmt(row['firing_frequency'])} | "
                f"{_fmt(row['mean_activation'])} | {_fmt(row['effective_contribution'])} |"
            )
        out.append("")
        with_contexts = [r for r in latents if r.get("contexts")][:10]
        if with_contexts:
            out += ["### Top-activating contexts", ""]
            for row in with_contexts:
                label = f" — {row['label']}" if row["label"] else ""
                out.append(f"**{row['hook_name']} #{row['index']}**{label}")
                out.append("")
                for c in row["contexts"]:
                    out.append(f"- row {c['row']}, act {_fmt(c['activation'], 2)}: `{c['marked']}`")
                out.append("")
    rows = report.get("rows")
    if rows:
        out += [
            "## Suspect rows",
            "",
            f"Score `{rows['method']}`; {rows['n_suspects']} of {rows['n_rows']} rows above the "
            f"threshold {_fmt(rows['threshold'])} (all rows ranked in `suspects.jsonl`).",
            "",
        ]
        if "row_scores" in images:
            out += [f"![Row scores]({images['row_scores']})", ""]
        for item in rows.get("top", [])[:10]:
            out.append(
                f"- row {item['row']} (score {_fmt(item['score'])}): `{_cell(item['preview'])}`"
            )
        out.append("")
    evaluation = report.get("evaluation")
    if evaluation:
        out += ["## Evaluation against ground truth", ""]
        out += [
            f"- {k}: {_fmt(v)}" for k, v in evaluation.items() if not isinstance(v, (dict, list))
        ]
        out.append("")
    baselines = report.get("baselines", {})
    if baselines:
        out += ["## Baselines", ""]
        diff = baselines.get("dataset_diff")
        if diff:
            out.append(
                f"- dataset diffing: max |z| {_fmt(diff['score'])} vs permutation threshold "
                f"{_fmt(diff['threshold'])} → {'flagged' if diff['flagged'] else 'not flagged'} "
                f"({diff['n_flagged_latents']} latents differ)"
            )
        inter = baselines.get("topk_intersection")
        if inter:
            parts = [
                f"k={k}: diff {_fmt(inter['candidate'][k]['difference'])} "
                f"(z {_fmt(inter['z'][k], 2)}{', flagged' if inter['flagged'][k] else ''})"
                for k in inter["candidate"]
            ]
            out.append("- top-k intersection: " + "; ".join(parts))
        out.append("")
    return "\n".join(out)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write)


def write_report(
    report: dict[str, Any], out_dir: str | Path, *, html: bool = True, image_dir: str | None = None
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and (``html``) the self-contained ``report.html``.

    With ``image_dir`` (relative to ``out_dir``), the plots are also saved there as PNGs and
    referenced from ``report.md``.
    """
    from isaerft.audit.figures import figures_png
    from isaerft.audit.html import render_html

    out_dir = Path(out_dir)
    paths = {"json": write_json(out_dir / "report.json", report)}
    figures = figures_png(report) if html or image_dir else {}
    images: dict[str, str] = {}
    if image_dir is not None:
        for name, png in figures.items():
            write_bytes(out_dir / image_dir / f"{name}.png", png)
            images[name] = f"{image_dir}/{name}.png"
    paths["md"] = write_text(out_dir / "report.md", render_markdown(report, images))
    if html:
        paths["html"] = write_text(out_dir / "report.html", render_html(report, figures))
    return paths


def write_suspects(
    path: str | Path, scores: RowScores, data: AuditData, preview: int = 160
) -> Path:
    """Write ``suspects.jsonl``: every row, most suspect first, with its score, rank, whether it
    is a suspect, and a text preview. Drop the ``suspect`` rows and retrain."""
    lines = []
    for rank, i in enumerate(scores.order, start=1):
        prompt, completion = split_row(data.rows[i], f"row {i}")
        text = (prompt + completion).replace("\n", " ")
        record = {
            "row": i,
            "rank": rank,
            "score": float(scores.scores[i]),
            "suspect": float(scores.scores[i]) > scores.threshold,
            "preview": text[:preview],
        }
        lines.append(json.dumps(record))
    return write_text(path, "\n".join(lines) + "\n")


def write_audit(
    report: dict[str, Any],
    out_dir: str | Path,
    rows: RowScores | None = None,
    data: AuditData | None = None,
) -> dict[str, Path]:
    """Write every file of an audit to ``out_dir``: the report (:func:`write_report`) and,
    with the row scores and their rows, ``suspects.jsonl``. Returns the paths by kind."""
    paths = write_report(report, out_dir)
    if rows is not None and data is not None:
        paths["suspects"] = write_suspects(Path(out_dir) / "suspects.jsonl", rows, data)
    return paths


def _association_lines(search: dict[str, Any] | None) -> list[str]:
    """The association search in the Markdown report."""
    if not search:
        return []
    out = [
        f"Association search (prompt latent or word -> answer latent or word, audited vs trusted "
        f"rows): "
        f"best prompt latent {_fmt(search['score'])} vs trusted-split threshold {_fmt(search['threshold'])} "
        f"({'found' if search['found'] else 'none found'}; {search['n_rows']} rows carry one)."
    ]
    for c in search["candidates"][:5]:
        out.append(
            f"- when {prompt_name(c, hook=True)} is in the prompt, "
            f"{answer_name(c)} answers in {c['rows']} of "
            f"{c['prompt_rows']} rows (expected {_fmt(c['expected_rows'], 1)}; score "
            f"{_fmt(c['score'], 1)})"
        )
    out += [f"- {line}" for line in words_lines(search, PAIRED_WORDS)]
    out += [f"- {line}" for line in context_lines(search.get("context"))]
    return [*out, ""]
