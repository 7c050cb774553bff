"""The audit report's figures, drawn from ``report.json`` alone.

matplotlib's Agg backend draws each figure to PNG bytes (:func:`figures_png`), which
:mod:`isaerft.audit.html` embeds as base64 so the page opens offline and shows the same thing
forever.
"""

from __future__ import annotations

import io
from typing import Any

_POS, _NEG, _REF, _LINE = "#c0392b", "#2e6da4", "#9aa5b1", "#222222"


def _pyplot() -> Any:
    import matplotlib  # a dependency of isaerft; imported here so reports without plots skip it

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
