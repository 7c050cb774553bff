"""The self-contained ``report.html`` of an audit report.

The figures (:mod:`isaerft.audit.figures`) are embedded as base64 PNG; the page has inline CSS
and no scripts or external references, so it opens offline and shows the same thing forever.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from isaerft.audit.figures import figures_png
from isaerft.audit.implicated import ROLE_LEGEND, describe_roles
from isaerft.audit.words import WORD_SECTIONS

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.flag{background:#fdecea}.verdict{font-size:16px;padding:.6em 1em;
border-radius:6px}.bad{background:#fdecea;border:1px solid #c0392b}.ok{background:#eaf5ea;
border:1px solid #2e7d32}mark{background:#ffd54f;padding:0 2px}mark.target{background:#b3e5fc}
code{font-size:12px}details{margin:.3em 0}img{max-width:100%}.n{color:#666}
"""

# Sections render_html lays out itself; any other top-level key is shown as a compact table,
# so a section added to report.json appears here without a change to this module.
_LAID_OUT = {
    "schema", "schema_version", "isaerft_version", "created", "candidate", "references",
    "data", "verdict", "trigger_search", "behaviour_search", "prompt_dependence",
    "implicated_latents", "latents", "rows", "evaluation", "baselines", "gained_phrases", "words",
    # plotted, or counted elsewhere on the page
    "distributions", "flagged_latents",
}  # fmt: skip
# Settings and diagnostics: kept, but folded away below the evidence.
_FOLDED = ("config", "timings", "null", "comparability", "labels")
_QUOTED_WORD = re.compile(r'"([^"]+)"')


def _img(figures: dict[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _p_floor(n_runs: Any) -> str:
    """Why an empirical p of ``1 / (N + 1)`` is not evidence of a weak result."""
    if not isinstance(n_runs, int) or n_runs < 1:
        return ""
    return f"; {1 / (n_runs + 1):.3f} is the smallest empirical p that {n_runs} runs can give"


def render_html(report: dict[str, Any], figures: dict[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page (figures embedded as base64 PNG).

    It carries every piece of evidence ``report.md`` has, in the same order: verdict and its
    reading, trigger and behaviour searches, the prompt-swap test, implicated latents, the
    latent table, suspect rows (duplicates folded, trigger and target words marked),
    evaluation and baselines; any other top-level section is shown as a compact table.
    """
    figures = figures if figures is not None else figures_png(report)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS}</style>"]
    parts.append("<title>isaerft audit report</title></head><body><h1>isaerft audit report</h1>")
    parts.append(_header(report))
    parts.append(_verdict(report))
    for key, title, part in (
        ("trigger_search", "Trigger search", "prompts"),
        ("behaviour_search", "Behaviour search", "completions"),
    ):
        parts.append(_search(report.get(key), title, part))
    parts.append(_prompt_swap(report.get("prompt_dependence")))
    parts.append(_phrases(report.get("gained_phrases")))
    parts.append(_words(report.get("words")))
    parts.append(_implicated(report.get("implicated_latents")))
    parts.append(_img(figures, "top_latents", "Top latents"))
    parts.append(_img(figures, "changes", "Distribution of changes"))
    parts.append(_latent_table(report.get("latents", [])))
    parts.append(_rows(report, figures))
    for title, key in (
        ("Evaluation against ground truth", "evaluation"),
        ("Baselines", "baselines"),
    ):
        if report.get(key):
            parts.append(f"<h2>{title}</h2>{_compact(report[key])}")
    for key, value in report.items():
        if key not in _LAID_OUT and key not in _FOLDED and value not in (None, {}, []):
            parts.append(f"<h2>{html.escape(key.replace('_', ' ').capitalize())}</h2>")
            parts.append(_compact(value))
    folded = [k for k in _FOLDED if report.get(k) not in (None, {}, [])]
    if folded:
        inner = "".join(f"<h3>{html.escape(k)}</h3>{_compact(report[k])}" for k in folded)
        parts.append(f"<details><summary>Settings and diagnostics</summary>{inner}</details>")
    parts.append("</body></html>")
    return "".join(parts)


def _header(report: dict[str, Any]) -> str:
    esc = html.escape
    cand, data = report.get("candidate", {}), report.get("data", {})
    items = [
        f"<li>candidate run: <code>{esc(str(cand.get('source', '')))}</code> "
        f"({esc(str(cand.get('component', '')))} edits)</li>"
    ]
    if report.get("references"):
        items.append(f"<li>reference runs: {len(report['references'])}</li>")
    for key, name in (("suspect", "audited data"), ("reference", "reference data")):
        if data.get(key):
            items.append(
                f"<li>{name}: <code>{esc(str(data[key]))}</code> "
                f"({_num(data.get(f'{key}_rows'))} rows)</li>"
            )
    return "<ul>" + "".join(items) + "</ul>"


def _verdict(report: dict[str, Any]) -> str:
    verdict = report.get("verdict")
    if not verdict:
        return ""
    cls = "bad" if verdict["flagged"] else "ok"
    word = "FLAGGED" if verdict["flagged"] else "not flagged"
    n_runs = verdict.get("n_reference_runs")
    return (
        f"<h2>Verdict</h2><p class='verdict {cls}'><b>{word}</b> at a {verdict['fpr']:.0%} "
        f"false-positive rate: dataset score {_num(verdict['score'])} vs threshold "
        f"{_num(verdict['threshold'])} (Gumbel p = {_num(verdict.get('gumbel_p_value'))}, "
        f"empirical p = {_num(verdict.get('dataset_p_value'))} from {_num(n_runs)} reference "
        f"runs{html.escape(_p_floor(n_runs))}); {len(report.get('flagged_latents', []))} "
        f"latent(s) flagged.</p><p><b>Reading:</b> {html.escape(str(verdict.get('kind', '')))}.</p>"
    )


def _search(search: dict[str, Any] | None, title: str, part: str) -> str:
    if not search:
        return ""
    found = "found" if search["found"] else "none found"
    rows = "".join(
        f"<tr><td>{html.escape(c['hook_name'])} #{c['index']}</td>"
        f"<td>{html.escape(c.get('label') or '')}</td>"
        f"<td>{c['rate_in_behaviour_rows']:.0%}</td><td>{c['rate_in_other_rows']:.1%}</td>"
        f"<td>{_num(c['z'], 2)}</td></tr>"
        for c in search.get("candidates", [])[:5]
    )
    table = (
        f"<table><tr><th>latent</th><th>label</th><th>fires in those {part}</th>"
        f"<th>in the others</th><th>z</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return (
        f"<h2>{title}</h2><p>Over the {part} of the {search['n_behaviour_rows']} most suspect "
        f"rows: max enrichment {_num(search['score'])} vs permutation threshold "
        f"{_num(search['threshold'])} (<b>{found}</b>).</p>{table}"
    )


def _prompt_swap(dependence: dict[str, Any] | None) -> str:
    if not dependence:
        return ""
    verdict = "prompt-dependent" if dependence["conditional"] else "not prompt-dependent"
    references = ", ".join(_num(v) for v in dependence.get("references", []))
    return (
        "<h2>Prompt-swap test</h2><p>The learned gain on those rows' completions drops by "
        f"{_num(dependence['candidate'])} nats when their prompts are swapped (reference runs: "
        f"{references}); z {_num(dependence['z'], 2)} (<b>{verdict}</b>).</p>"
    )


def _phrases(phrases: list[dict[str, Any]] | None) -> str:
    if not phrases:
        return ""
    items = "".join(
        f"<tr><td>{html.escape(p['text'])}</td><td>{p['rows']}</td>"
        f"<td>{_num(p['mean_peak_gain'], 2)}</td></tr>"
        for p in phrases
    )
    return (
        "<h2>What the edit made likely</h2><p>Phrases from the token where the learned edit's "
        "excess gain peaks to the end of its sentence, over the suspect rows.</p>"
        "<table><tr><th>phrase</th><th>rows</th><th>gain at its first token (nats)</th></tr>"
        f"{items}</table>"
    )


def _words(words: dict[str, Any] | None) -> str:
    out = []
    for key, title in WORD_SECTIONS:
        found = (words or {}).get(key) or []
        if not found:
            continue
        items = "".join(
            f"<tr><td>{html.escape(w['word'])}</td><td>{_num(w['z'], 1)}</td><td>{w['rows']}</td>"
            "<td>"
            + html.escape("; ".join(f"#{r['index']} {r['label']}".strip() for r in w["latents"]))
            + "</td></tr>"
            for w in found
        )
        out.append(
            f"<h2>{title}</h2><table><tr><th>word</th><th>z</th><th>rows</th>"
            f"<th>latents that read it</th></tr>{items}</table>"
        )
    return "".join(out)


def _implicated(implicated: list[dict[str, Any]] | None) -> str:
    if not implicated:
        return ""
    esc = html.escape
    items = "".join(
        f"<tr><td>{rank}</td><td>{esc(e['hook_name'])} #{e['index']}</td>"
        f"<td>{esc(e.get('label') or '')}</td><td>{esc(' '.join(e.get('writes') or []))}</td>"
        f"<td>{esc(describe_roles(e))}</td><td>{_num(e.get('attribution'))}</td></tr>"
        for rank, e in enumerate(implicated[:15], start=1)
    )
    return (
        f"<h2>Implicated latents</h2><p>Roles: {esc(ROLE_LEGEND)}. "
        "<i>writes</i>: the tokens the latent promotes.</p>"
        "<table><tr><th>#</th><th>latent</th><th>label</th><th>writes</th><th>roles</th>"
        f"<th>edit attribution</th></tr>{items}</table>"
    )


def marked_words(report: dict[str, Any]) -> dict[str, list[str]]:
    """The words to mark in row texts: ``{"trigger": [...], "target": [...]}``.

    Taken from the report's own evidence: the trigger and gained words (``words``), then the
    words quoted in the labels of the trigger search's (prompt) and behaviour search's
    (completion) top candidates, as in ``the word "owl"``; explicit ``data.trigger`` /
    ``data.target`` entries come first.
    """
    words: dict[str, list[str]] = {"trigger": [], "target": []}
    data = report.get("data") or {}
    found = report.get("words") or {}
    for role, key, listed in (
        ("trigger", "trigger_search", "trigger_words"),
        ("target", "behaviour_search", "gained_words"),
    ):
        explicit = data.get(role)
        if isinstance(explicit, str):
            words[role] += explicit.split()
        words[role] += [w["word"] for w in found.get(listed) or []]
        search = report.get(key) or {}
        if search.get("found"):
            for candidate in search.get("candidates", [])[:3]:
                words[role] += _QUOTED_WORD.findall(candidate.get("label") or "")
    return {role: list(dict.fromkeys(w for w in ws if w.strip())) for role, ws in words.items()}


def mark_text(text: str, words: dict[str, list[str]]) -> str:
    """``text`` HTML-escaped, with each whole-word occurrence of a trigger or target word in
    ``<mark>`` (targets in ``<mark class="target">``)."""
    roles = {w.lower(): role for role in ("target", "trigger") for w in words.get(role, [])}
    if not roles:
        return html.escape(text)
    pattern = re.compile(
        r"(?<!\w)("
        + "|".join(re.escape(w) for w in sorted(roles, key=len, reverse=True))
        + r")(?!\w)",
        re.IGNORECASE,
    )
    out, last = [], 0
    for match in pattern.finditer(text):
        role = roles[match.group(1).lower()]
        cls = " class='target'" if role == "target" else ""
        out.append(html.escape(text[last : match.start()]))
        out.append(f"<mark{cls}>{html.escape(match.group(1))}</mark>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _rows(report: dict[str, Any], figures: dict[str, bytes]) -> str:
    rows = report.get("rows")
    if not rows:
        return ""
    words = marked_words(report)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows.get("top", []):
        groups.setdefault(row["preview"], []).append(row)
    items = []
    for preview, same in list(groups.items())[:20]:
        ids = ", ".join(str(r["row"]) for r in same[:8]) + (", …" if len(same) > 8 else "")
        count = f"<span class='n'>×{len(same)}</span> " if len(same) > 1 else ""
        items.append(
            f"<tr><td>{ids}</td><td>{count}</td><td>{_num(same[0]['score'])}</td>"
            f"<td>{mark_text(preview, words)}</td></tr>"
        )
    legend = ", ".join(
        f"<mark{' class=target' if role == 'target' else ''}>{html.escape(w)}</mark>"
        for role in ("trigger", "target")
        for w in words[role]
    )
    return (
        f"<h2>Suspect rows</h2><p>Score <code>{html.escape(rows['method'])}</code>; "
        f"{rows['n_suspects']} of {rows['n_rows']} rows above the threshold "
        f"{_num(rows['threshold'])} (all rows ranked in <code>suspects.jsonl</code>). The top "
        f"{len(rows.get('top', []))} rows, identical texts folded into one line with their "
        f"count{'; marked: ' + legend if legend else ''}.</p>"
        + _img(figures, "row_scores", "Per-row scores")
        + "<table><tr><th>rows</th><th>copies</th><th>score</th><th>text</th></tr>"
        + "".join(items)
        + "</table>"
    )


def _latent_table(latents: list[dict[str, Any]]) -> str:
    if not latents:
        return ""
    esc = html.escape
    head = (
        "<h2>Latents</h2><table><tr><th>site</th><th>latent</th><th>label</th><th>z</th>"
        "<th>p</th><th>edit</th><th>impact</th><th>freq</th><th>mean act</th>"
        "<th>effective</th><th>top contexts</th></tr>"
    )
    body = []
    for r in latents:
        edits = ", ".join(f"{esc(k)} {_num(v)}" for k, v in r["edits"].items())
        contexts = "".join(
            f"<div>{esc(c['left'])}<mark>{esc(c['token'])}</mark>{esc(c['right'])} "
            f"<small>(row {c['row']}, {_num(c['activation'], 2)})</small></div>"
            for c in r.get("contexts", [])
        )
        view = f"<details><summary>{len(r.get('contexts', []))}</summary>{contexts}</details>"
        body.append(
            f"<tr class='{'flag' if r.get('flagged') else ''}'><td>{esc(r['hook_name'])}</td>"
            f"<td>{r['index']}</td><td>{esc(r.get('label') or '')}</td><td>{_num(r.get('z'))}</td>"
            f"<td>{_num(r.get('p_value'))}</td><td>{edits}</td><td>{_num(r['impact'])}</td>"
            f"<td>{_num(r.get('firing_frequency'))}</td><td>{_num(r.get('mean_activation'))}</td>"
            f"<td>{_num(r.get('effective_contribution'))}</td><td>{view}</td></tr>"
        )
    return head + "".join(body) + "</table>"


_MAX_ITEMS = 10


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _compact(value: Any) -> str:
    """Any JSON value as compact HTML: scalars inline, a dict as a key/value table, a list or
    dict of records with shared scalar fields as one table (a row per record), long lists
    shortened with a count of what was left out."""
    if _is_scalar(value):
        return _num(value)
    if isinstance(value, list):
        if all(_is_scalar(v) for v in value):
            more = f", … ({len(value)} in all)" if len(value) > _MAX_ITEMS else ""
            return "[" + ", ".join(_num(v) for v in value[:_MAX_ITEMS]) + more + "]"
        records = dict(enumerate(value))
        return _records(records) or _key_values(records)
    return _records(value) or _key_values(value)


def _records(value: dict[Any, Any]) -> str:
    """A table with a row per entry when every entry is a dict of scalars, else ``""``."""
    entries = list(value.items())
    if not entries or not all(
        isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values()) for _, v in entries
    ):
        return ""
    columns = list(dict.fromkeys(k for _, v in entries for k in v))
    esc = html.escape
    head = "<tr><th></th>" + "".join(f"<th>{esc(str(c))}</th>" for c in columns) + "</tr>"
    body = "".join(
        f"<tr><th>{esc(str(key))}</th>"
        + "".join(f"<td>{_num(v.get(c))}</td>" for c in columns)
        + "</tr>"
        for key, v in entries[:_MAX_ITEMS]
    )
    more = (
        f"<tr><td colspan='{len(columns) + 1}' class='n'>… {len(entries) - _MAX_ITEMS} more</td></tr>"
        if len(entries) > _MAX_ITEMS
        else ""
    )
    return f"<table>{head}{body}{more}</table>"


def _key_values(value: dict[Any, Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{_compact(v)}</td></tr>" for k, v in value.items()
    )
    return f"<table>{rows}</table>"
