"""Evaluation reports: ``metrics.csv``, ``metrics.json`` and a self-contained ``report.html``.

Every file is written atomically (:func:`medannot.io.atomic.atomic_write_text`).
The HTML page has inline CSS and its plots embedded as base64 PNG: it opens
offline and can be mailed as one file; it references no external URL.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from medannot.evaluation.accumulate import FIRST_COLUMNS, SUMMARY_METRICS, summarise

__all__ = ["csv_columns", "versions", "write_csv", "write_html", "write_json", "write_report"]

_EXTRA_ORDER = ("specificity", "hausdorff", "surface_dice", "volume_difference", "truth_volume", "pred_volume", "empty")

HOW_TO_READ = {
    "dice": "Overlap of the automatic and the reference mask, from 0 (no overlap) to 1 (identical). "
    "Twice the shared volume divided by the sum of both volumes. Small structures get low Dice from small errors.",
    "iou": "Intersection over union (Jaccard): shared volume divided by the volume covered by either mask. "
    "Always lower than Dice for the same result; 0 to 1.",
    "precision": "Of what the algorithm marked, the fraction that is in the reference. Low precision = over-segmentation or false positives.",
    "recall": "Of the reference, the fraction the algorithm found (sensitivity). Low recall = missed tissue or lesions.",
    "hd95": "Boundary error in mm that 95% of the boundary points stay within, taken as the worse of the two directions "
    "(automatic-to-reference and reference-to-automatic; MONAI's definition). Robust to a few stray voxels.",
    "hd95_pooled": "Same idea as HD95 but over the boundary points of both masks pooled together (MedPy's definition); "
    "never larger than HD95.",
    "assd": "Average distance in mm between the two boundaries (every boundary voxel of both masks to the other boundary).",
    "hausdorff": "The single largest boundary distance in mm: the worst point anywhere, including far-away false positives.",
    "surface_dice": "Fraction of both boundaries lying within the tolerance (in mm) of the other boundary, 0 to 1; "
    "how much of the outline a reader would accept without correction.",
    "specificity": "Fraction of background correctly left unmarked. Near 1 for small structures in large images; rarely informative.",
    "volume_difference": "Automatic minus reference volume (mm³; mm² for 2D images). Positive = too large.",
    "empty": "Empty cases: 'truth' = the reference has no such structure but the algorithm marked some; "
    "'prediction' = the algorithm marked nothing where the reference has the structure; 'both' = correctly absent. "
    "An empty mask scores Dice 0 and the worst-case distance (the diagonal of the image in mm), and is included in every "
    "average (never dropped).",
}


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column order: ``case,label,dice,iou,precision,recall,hd95,hd95_pooled,assd``, then extras."""
    seen: list[str] = list(FIRST_COLUMNS)
    for key in _EXTRA_ORDER:
        if any(key in r for r in rows):
            seen.append(key)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.append(key)
    return seen


def versions() -> dict[str, str]:
    """Versions of Python and the libraries the metrics depend on."""
    import numpy
    import scipy

    import medannot

    return {"medannot": medannot.__version__, "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write one row per case and label to ``path`` (atomic).

    Returns:
        The path written.
    """
    from medannot.io.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(rows), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_json(rows: Sequence[dict[str, Any]], summary: dict[str, Any], settings: dict[str, Any], path: str | Path) -> Path:
    """Write ``{"rows", "summary", "settings", "versions", "created"}`` to ``path`` (atomic, strict JSON)."""
    from medannot.io.atomic import atomic_write_text

    doc = {
        "rows": list(rows),
        "summary": summary,
        "settings": settings,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_text(path, json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- HTML


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _boxplot_png(rows: Sequence[dict[str, Any]], metric: str, unit: str) -> str | None:
    """Box plot of ``metric`` per label as a base64 PNG, or None when there is nothing to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    data = [[float(r[metric]) for r in rows if str(r["label"]) == lab and r.get(metric) is not None] for lab in labels]
    if not any(data):
        return None
    fig = Figure(figsize=(max(3.5, 1.1 * len(labels) + 1.5), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.boxplot(data, tick_labels=labels, showmeans=True)
    for i, values in enumerate(data, start=1):
        ax.plot([i] * len(values), values, ".", color="#555555", alpha=0.6, markersize=4)
    ax.set_title(f"{metric} per label")
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}tr.empty td{background:#fff3cd}
.note{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}
.plots img{margin:.3em;border:1px solid #eee}dt{font-weight:bold;margin-top:.5em}
"""

_UNITS = {"hd95": "mm", "hd95_pooled": "mm", "assd": "mm", "hausdorff": "mm", "volume_difference": "mm³", "truth_volume": "mm³", "pred_volume": "mm³"}


def _summary_table(summary: dict[str, Any]) -> str:
    metrics = [m for m in SUMMARY_METRICS if m not in ("truth_volume", "pred_volume")]
    head = "".join(f"<th>{html.escape(m)}{' (' + _UNITS[m] + ')' if m in _UNITS else ''}</th>" for m in metrics)
    body = []
    for label, per_metric in summary.get("labels", {}).items():
        n = max((s["n"] for s in per_metric.values()), default=0)
        cells = []
        for m in metrics:
            s = per_metric.get(m)
            if s is None:
                cells.append("<td>–</td>")
            else:
                sd = "" if s["std"] is None else f" ± {s['std']:.3f}"
                cells.append(f"<td>{s['mean']:.3f}{sd}<br><small>median {s['median']:.3f}</small></td>")
        body.append(f"<tr><td class=t>{html.escape(label)}</td><td>{n}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th class=t>label</th><th>n</th>{head}</tr>{''.join(body)}</table>"


def _case_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = ["case", "label", "dice", "iou", "precision", "recall", "hd95", "hd95_pooled", "assd", "surface_dice", "truth_volume", "pred_volume", "empty"]
    ordered = sorted(rows, key=lambda r: (float(r.get("dice", 0.0)), -float(r.get("hd95", 0.0)), str(r["case"]), str(r["label"])))
    head = "".join(f"<th class={'t' if c in ('case', 'label', 'empty') else 'n'}>{c}</th>" for c in cols)
    body = []
    for r in ordered:
        cls = " class=empty" if r.get("empty") else ""
        cells = "".join(f"<td class={'t' if c in ('case', 'label', 'empty') else 'n'}>{_fmt(r.get(c))}</td>" for c in cols)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_html(rows: Sequence[dict[str, Any]], summary: dict[str, Any], settings: dict[str, Any], path: str | Path) -> Path:
    """Write the self-contained HTML report to ``path`` (atomic).

    Contents: summary table per label (mean ± sample sd, median), box plots of
    Dice and HD95 per label, empty cases called out, per-case table sorted
    worst first (lowest Dice, then largest HD95), settings and a plain-words
    explanation of each metric.
    """
    from medannot.io.atomic import atomic_write_text

    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>medannot evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Segmentation evaluation</h1>",
        f"<p>{summary.get('n_cases', 0)} case(s), {summary.get('n_rows', 0)} case/label rows. "
        f"Surface Dice tolerance: {_fmt(settings.get('tolerance_mm'), 2)} mm.</p>",
    ]
    missing = summary.get("missing_predictions") or []
    unmatched = summary.get("unmatched_predictions") or []
    empty_cases = summary.get("empty_cases", [])
    if empty_cases or missing or unmatched:
        parts.append("<div class=note><b>Attention.</b><ul>")
        if missing:
            parts.append(f"<li>No prediction for {len(missing)} case(s), scored as empty predictions: {html.escape(', '.join(missing))}</li>")
        if unmatched:
            parts.append(f"<li>{len(unmatched)} prediction(s) without a reference, not scored: {html.escape(', '.join(unmatched))}</li>")
        for e in empty_cases:
            what = {"truth": "reference is empty, prediction is not", "prediction": "prediction is empty, reference is not", "both": "absent in both (scored as perfect)"}[e["empty"]]
            parts.append(f"<li>{html.escape(e['case'])} / {html.escape(e['label'])}: {what}</li>")
        parts.append("</ul></div>")
    parts += ["<h2>Summary per label</h2>", _summary_table(summary)]
    plots = [(m, _boxplot_png(rows, m, _UNITS.get(m, ""))) for m in ("dice", "hd95")] if rows else []
    if any(p for _, p in plots):
        parts.append("<h2>Distributions</h2><div class=plots>")
        parts += [f"<img alt='{m} box plot' src='data:image/png;base64,{p}'>" for m, p in plots if p]
        parts.append("</div>")
    parts += ["<h2>Cases, worst first</h2>", _case_table(rows)]
    parts.append("<h2>How to read this</h2><dl>")
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in HOW_TO_READ.items()]
    parts.append("</dl>")
    parts.append(f"<h2>Settings</h2><pre>{html.escape(json.dumps(_json_safe(settings), indent=2))}</pre>")
    parts.append(f"<p><small>{html.escape(json.dumps(versions()))}</small></p></body></html>")
    return atomic_write_text(path, "\n".join(parts))


def write_report(
    out_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.csv``, ``metrics.json`` and ``report.html`` into ``out_dir``.

    Args:
        out_dir: Output folder (created if needed).
        rows: Metric rows (``case``, ``label``, metrics, ``empty``).
        summary: Summary from :func:`summarise`; computed from ``rows`` when omitted.
        settings: Run settings saved in the JSON and shown in the HTML (``tolerance_mm`` is shown at the top).
            Lists ``summary["missing_predictions"]`` / ``summary["unmatched_predictions"]``, when present,
            are called out at the top of the HTML page.

    Returns:
        ``{"csv": path, "json": path, "html": path}``.
    """
    out = Path(out_dir)
    summary = summarise(rows) if summary is None else summary
    settings = dict(settings or {})
    return {
        "csv": write_csv(rows, out / "metrics.csv"),
        "json": write_json(rows, summary, settings, out / "metrics.json"),
        "html": write_html(rows, summary, settings, out / "report.html"),
    }
