"""Plots of an audit report and the self-contained ``report.html`` that embeds them.

Every figure is drawn from ``report.json`` alone with matplotlib's Agg backend and embedded as
base64 PNG; the page has inline CSS and no scripts or external references, so it opens
offline and shows the same thing forever.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

_POS, _NEG, _REF, _LINE = "#c0392b", "#2e6da4", "#9aa5b1", "#222222"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "the audit's plots need matplotlib (a dependency of isaerft): pip install matplotlib"
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _short(text: str, n: int = 38) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plot_top_latents(report: dict[str, Any], n: int = 20) -> bytes | None:
    """Signed bar chart of the top latents' ``z`` (or learned change without a null)."""
    rows = report.get("latents", [])[:n]
    if not rows:
        return None
    plt = _pyplot()
    use_z = rows[0].get("z") is not None
    values = [r["z"] if use_z else next(iter(r["edits"].values())) for r in rows]
    names = [f"#{r['index']} {_short(r['label'] or '')}" for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.2))
    colours = [_POS if v >= 0 else _NEG for v in values]
    bars = ax.barh(range(len(rows)), values, color=colours)
    for bar, row in zip(bars, rows):
        if row.get("flagged"):
            bar.set_edgecolor(_LINE)
            bar.set_linewidth(1.5)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    verdict = report.get("verdict")
    if use_z and verdict and verdict.get("latent_threshold") is not None:
        for sign in (1, -1):
            ax.axvline(sign * verdict["latent_threshold"], color=_LINE, ls="--", lw=0.8)
    ax.axvline(0, color=_LINE, lw=0.6)
    ax.set_xlabel("z against reference runs" if use_z else "learned change")
    ax.set_title("Top latents (outlined: flagged; dashed: flagging threshold)", fontsize=9)
    return _png(fig)


def plot_changes(report: dict[str, Any]) -> bytes | None:
    """Histograms of every latent's learned change and of its ``|z|`` with the threshold."""
    dist = report.get("distributions", {})
    edits = dist.get("edits", {})
    if not edits:
        return None
    plt = _pyplot()
    z_values = [abs(v) for vs in dist.get("z", {}).values() for v in vs]
    fig, axes = plt.subplots(1, 2 if z_values else 1, figsize=(9, 3.2), squeeze=False)
    ax = axes[0][0]
    for hook, kinds in edits.items():
        for kind, values in kinds.items():
            ax.hist(values, bins=80, alpha=0.7, label=f"{kind} ({hook})", log=True)
    ax.set_xlabel("learned change per latent")
    ax.set_ylabel("latents")
    ax.legend(fontsize=7)
    if z_values:
        ax = axes[0][1]
        ax.hist(z_values, bins=80, color=_REF, log=True)
        threshold = (report.get("verdict") or {}).get("latent_threshold")
        if threshold is not None:
            ax.axvline(threshold, color=_POS, ls="--", lw=1.2, label=f"threshold {threshold:.2f}")
            ax.legend(fontsize=7)
        ax.set_xlabel("|z| per latent")
    fig.suptitle("Distribution of changes", fontsize=9)
    return _png(fig)


def plot_row_scores(report: dict[str, Any]) -> bytes | None:
    """Histogram of per-row scores (audited and reference rows) with the suspect threshold."""
    rows = report.get("rows")
    if not rows or not rows.get("scores"):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    scores = rows["scores"]
    reference = rows.get("reference_scores") or []
    lo = min([*scores, *reference])
    hi = max([*scores, *reference])
    bins = [lo + (hi - lo) * i / 60 for i in range(61)] if hi > lo else 10
    if reference:
        ax.hist(reference, bins=bins, color=_REF, alpha=0.7, log=True, label="reference rows")
    ax.hist(scores, bins=bins, color=_POS, alpha=0.6, log=True, label="audited rows")
    ax.axvline(rows["threshold"], color=_LINE, ls="--", lw=1.2, label="suspect threshold")
    ax.set_xlabel(f"row score ({rows['method']})")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)
    ax.set_title("Per-row scores", fontsize=9)
    return _png(fig)


def figures_png(report: dict[str, Any]) -> dict[str, bytes]:
    """All the report's figures as PNG bytes, by name."""
    figures = {
        "top_latents": plot_top_latents(report),
        "changes": plot_changes(report),
        "row_scores": plot_row_scores(report),
    }
    return {name: png for name, png in figures.items() if png is not None}


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.flag{background:#fdecea}.verdict{font-size:16px;padding:.6em 1em;
border-radius:6px}.bad{background:#fdecea;border:1px solid #c0392b}.ok{background:#eaf5ea;
border:1px solid #2e7d32}mark{background:#ffd54f;padding:0 2px}code{font-size:12px}
details{margin:.3em 0}img{max-width:100%}
"""


def _img(figures: dict[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def render_html(report: dict[str, Any], figures: dict[str, bytes] | None = None) -> str:
    """The report as one self-contained HTML page (figures embedded as base64 PNG)."""
    figures = figures if figures is not None else figures_png(report)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS}</style>"]
    parts.append("<title>isaerft audit report</title></head><body><h1>isaerft audit report</h1>")
    cand, data = report.get("candidate", {}), report.get("data", {})
    parts.append(f"<p>Candidate run <code>{esc(str(cand.get('source', '')))}</code>")
    if data.get("suspect"):
        parts.append(f", audited data <code>{esc(str(data['suspect']))}</code>")
    parts.append("</p>")
    verdict = report.get("verdict")
    if verdict:
        cls = "bad" if verdict["flagged"] else "ok"
        word = "FLAGGED" if verdict["flagged"] else "not flagged"
        parts.append(
            f"<p class='verdict {cls}'><b>{word}</b> at {verdict['fpr']:.0%} false-positive rate: "
            f"score {_num(verdict['score'])} vs threshold {_num(verdict['threshold'])}; "
            f"{len(report.get('flagged_latents', []))} latent(s) flagged; Gumbel p = "
            f"{_num(verdict.get('gumbel_p_value'))}.<br>{esc(str(verdict.get('kind', '')))}.</p>"
        )
    implicated = report.get("implicated_latents")
    if implicated:
        items = "".join(
            f"<tr><td>{esc(e['hook_name'])} #{e['index']}</td><td>{esc(e['label'] or '')}</td>"
            f"<td>{esc(', '.join(e['roles']))}</td><td>{_num(e['strength'])}</td></tr>"
            for e in implicated[:15]
        )
        parts.append(
            "<h2>Implicated latents</h2><p>Flagged changes, trigger candidates (enriched in the "
            "prompts of the most suspect rows) and behaviour candidates (enriched in their "
            "completions), by how far each clears its threshold:</p><table><tr><th>latent</th>"
            f"<th>label</th><th>roles</th><th>strength</th></tr>{items}</table>"
        )
    parts.append(_img(figures, "top_latents", "Top latents"))
    parts.append(_img(figures, "changes", "Distribution of changes"))
    parts.append(_latent_table(report.get("latents", [])))
    rows = report.get("rows")
    if rows:
        parts.append(
            f"<h2>Suspect rows</h2><p>{rows['n_suspects']} of {rows['n_rows']} rows score above "
            f"{_num(rows['threshold'])} ({esc(rows['method'])}); every row is ranked in "
            "<code>suspects.jsonl</code>.</p>"
        )
        parts.append(_img(figures, "row_scores", "Per-row scores"))
        items = "".join(
            f"<tr><td>{r['row']}</td><td>{_num(r['score'])}</td><td>{esc(r['preview'])}</td></tr>"
            for r in rows.get("top", [])[:20]
        )
        parts.append(f"<table><tr><th>row</th><th>score</th><th>text</th></tr>{items}</table>")
    for title, key in (
        ("Evaluation against ground truth", "evaluation"),
        ("Baselines", "baselines"),
    ):
        if report.get(key):
            parts.append(f"<h2>{title}</h2>{_tree(report[key])}")
    parts.append("</body></html>")
    return "".join(parts)


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


def _tree(value: Any, depth: int = 0) -> str:
    """Nested dicts/lists as nested HTML lists (long lists shortened)."""
    esc = html.escape
    if isinstance(value, dict):
        items = "".join(
            f"<li><b>{esc(str(k))}</b>: {_tree(v, depth + 1)}</li>" for k, v in value.items()
        )
        return f"<ul>{items}</ul>"
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            shown = ", ".join(_num(v) for v in value[:12])
            return f"[{shown}{', …' if len(value) > 12 else ''}]"
        return "<ol>" + "".join(f"<li>{_tree(v, depth + 1)}</li>" for v in value[:10]) + "</ol>"
    return _num(value)
