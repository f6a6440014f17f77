"""The run report's figures (matplotlib) and its one self-contained HTML page.

Every figure is a PNG embedded as a data URI, so ``report.html`` can be copied, mailed or
archived alone. The page has one section per part of the report, each with a stable id
(``SECTIONS``) so that people and tests can find it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SECTIONS = {
    "summary": "Summary",
    "curves": "Training curves",
    "metrics": "Evaluation metrics (TFMA)",
    "plots": "Confusion matrix and curves",
    "blessing": "Blessing decision",
    "edge": "TFLite variants",
    "explanations": "Explanation samples",
    "data": "Data statistics and anomalies",
    "config": "Effective config and code version",
}

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
.fail { color: #b00020; font-weight: bold; } .pass { color: #1b5e20; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; max-width: 520px; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_uri(fig) -> str:
    """A matplotlib figure as a ``data:image/png`` URI (the figure is closed)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def file_uri(path: str) -> str:
    """A PNG file as a data URI."""
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def curves_figure(curves: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> str:
    """One panel per epoch metric (``epoch_loss``, ...), a line per run (train, validation)."""
    plt = _pyplot()
    names = sorted(curves)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        for run, points in sorted(curves[name].items()):
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 30 else None, label=run)
        ax.set_title(name.removeprefix("epoch_"))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return png_uri(fig)


def confusion_figure(matrix: Sequence[Sequence[float]], class_names: Sequence[str],
                     title: str) -> str:
    """A confusion matrix (rows: actual class, columns: predicted), counts in the cells."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    n = len(counts)
    names = [str(c) for c in class_names] if len(class_names) == n else [str(i) for i in range(n)]
    size = max(3.5, 0.5 * n + 1.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, f"{counts[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the actual class")
    return png_uri(fig)


def roc_pr_figure(thresholds: Sequence[Mapping[str, float]], title: str) -> str:
    """ROC and precision-recall curves from TFMA's counts per threshold."""
    plt = _pyplot()
    tp = np.array([t["tp"] for t in thresholds])
    fp = np.array([t["fp"] for t in thresholds])
    tn = np.array([t["tn"] for t in thresholds])
    fn = np.array([t["fn"] for t in thresholds])
    tpr = tp / np.maximum(tp + fn, 1)
    fpr = fp / np.maximum(fp + tn, 1)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 3.8))
    roc.plot(fpr, tpr)
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate (sensitivity)")
    roc.set_title(f"ROC, {title}")
    pr.plot(tpr, precision)
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title(f"precision-recall, {title}")
    fig.tight_layout()
    return png_uri(fig)


def bars_figure(groups: Mapping[str, Mapping[str, float]], xlabel: str, title: str) -> str:
    """Grouped bars: one group per key of ``groups`` (e.g. a history-length bucket), one bar
    per figure in it (e.g. recall@20, MRR@20)."""
    plt = _pyplot()
    labels = list(groups)
    series = sorted({name for values in groups.values() for name in values})
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 3.5))
    width = 0.8 / max(len(series), 1)
    for i, name in enumerate(series):
        ax.bar(np.arange(len(labels)) + i * width,
               [groups[g].get(name, 0.0) for g in labels], width, label=name)
    ax.set_xticks(np.arange(len(labels)) + width * (len(series) - 1) / 2, labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return png_uri(fig)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    if value is None:
        return ""
    return html.escape(str(value))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (floats to four decimals, text escaped)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(uri: str, caption: str, alt: str) -> str:
    """A figure with its caption."""
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def paragraph(text: str, css: str = "") -> str:
    """An escaped paragraph."""
    return f'<p{f" class={chr(34)}{css}{chr(34)}" if css else ""}>{html.escape(text)}</p>'


def page(title: str, sections: Mapping[str, str]) -> str:
    """The whole page: the sections in ``SECTIONS`` order (a missing one says so)."""
    nav = " · ".join(f'<a href="#{key}">{html.escape(name)}</a>' for key, name in SECTIONS.items())
    parts = [f'<section id="{key}"><h2>{html.escape(name)}</h2>'
             f"{sections.get(key) or paragraph('Nothing to show for this run.')}</section>"
             for key, name in SECTIONS.items()]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{''.join(parts)}</body></html>")


def pre_json(value: Any) -> str:
    """A JSON value, pretty-printed in a <pre> block."""
    return f"<pre>{html.escape(json.dumps(value, indent=2, default=str))}</pre>"
