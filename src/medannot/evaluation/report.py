"""Evaluation reports: ``metrics.csv``, ``metrics.json`` and a self-contained ``report.html``.

Every file is written atomically (:func:`medannot.io.atomic.atomic_write_text`).
The HTML page comes from a Jinja2 template (:mod:`medannot.templates`) with the one stylesheet inlined and its
plots embedded as base64 PNG: it opens offline and can be mailed as one file; it references no external URL.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medannot.evaluation.accumulate import FIRST_COLUMNS, summarise
from medannot.evaluation.record import dumps_json
from medannot.evaluation.report_classification import write_classification_report
from medannot.evaluation.report_explanations import (
    Explanations,
    collect_explanations,
    explanation_view,
)
from medannot.evaluation.report_html import HOW_TO_READ
from medannot.evaluation.results import MetricRow, SegmentationSummary
from medannot.evaluation.thumbnails import Thumbnail

__all__ = [
    "HOW_TO_READ",
    "csv_columns",
    "versions",
    "write_classification_report",
    "write_csv",
    "write_html",
    "write_json",
    "write_report",
]

_EXTRA_ORDER = ("specificity", "hausdorff", "surface_dice", "volume_difference", "truth_volume", "pred_volume", "empty")

def csv_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
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
    import matplotlib
    import numpy
    import scipy

    import medannot

    return {
        "medannot": medannot.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
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


def write_json(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], settings: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``{"rows", "summary", "settings", "versions", "created"}`` to ``path`` (atomic, strict JSON: no NaN)."""
    from medannot.io.atomic import atomic_write_text

    doc = {
        "rows": list(rows),
        "summary": summary,
        "settings": settings,
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return atomic_write_text(path, dumps_json(doc) + "\n")


# ----------------------------------------------------------------------------- HTML


def write_html(
    rows: Sequence[MetricRow],
    summary: SegmentationSummary,
    settings: Mapping[str, Any],
    path: str | Path,
    thumbnails: Mapping[tuple[str, str], Thumbnail] | None = None,
    explanations: Explanations | None = None,
) -> Path:
    """Write the self-contained HTML report to ``path`` (atomic).

    Contents (see :mod:`medannot.evaluation.report_html`): a plain-words verdict per label,
    cases needing attention (missing, empty, not in the manifest), summary table per label
    (mean ± sample sd, median, empty counts), box plots of Dice and HD95 per label with every
    case as a point, "where to look first" (``explanations`` from
    :func:`medannot.evaluation.report_explanations.collect_explanations`: cases ranked by model
    uncertainty inside the mask, classifications by confidence, with overlays), lesion table and FROC curve (when computed), manifest breakdown tables
    and grouped box plots, worst cases with overlay thumbnails, every case worst first
    (lowest Dice, then largest HD95), how to read each metric, settings and versions.
    """
    from medannot.evaluation.report_html import render_html
    from medannot.evaluation.report_plots import (
        boxplot_png,
        froc_png,
        grouped_boxplot_png,
    )
    from medannot.io.atomic import atomic_write_text

    plots: dict[str, Any] = {}
    if rows:
        plots["dice"] = boxplot_png(rows, "dice", "Dice per label (1 = identical)")
        plots["hd95"] = boxplot_png(rows, "hd95", "HD95 per label (lower is better)", "mm")
    if summary.froc is not None and summary.froc.curves:
        plots["froc"] = froc_png(summary.froc.curves)
    columns = summary.manifest.columns if summary.manifest is not None else []
    plots["manifest"] = {c: grouped_boxplot_png(rows, c, "dice") for c in columns} if rows else {}
    created = datetime.now(UTC).isoformat(timespec="seconds")
    view = None if explanations is None else explanation_view(explanations, rows)
    page = render_html(rows, summary, settings, plots, dict(thumbnails or {}), versions(), created, explanations=view)
    return atomic_write_text(path, page)


def write_report(
    out_dir: str | Path,
    rows: Sequence[MetricRow],
    summary: SegmentationSummary | None = None,
    settings: Mapping[str, Any] | None = None,
    thumbnails: Mapping[tuple[str, str], Thumbnail] | None = None,
) -> dict[str, Path]:
    """Write ``metrics.csv``, ``metrics.json`` and ``report.html`` into ``out_dir``.

    Args:
        out_dir: Output folder (created if needed).
        rows: Metric rows (:class:`~medannot.evaluation.results.MetricRow`).
        summary: Summary from :func:`summarise`; computed from ``rows`` when omitted.
        settings: Run settings saved in the JSON and shown in the HTML (``tolerance_mm`` is shown at the top).
            Lists ``summary["missing_predictions"]`` / ``summary["unmatched_predictions"]``, when present,
            are called out at the top of the HTML page; ``summary["lesions"]``, ``["froc"]`` and
            ``["manifest"]`` (from :func:`medannot.evaluation.evaluate_paths`) get their own sections.
        thumbnails: ``{(case, label): Thumbnail}`` overlay thumbnails shown in the HTML only
            (see :mod:`medannot.evaluation.thumbnails`).

    When ``settings["prediction"]`` is a ``medannot annotate --out`` folder whose cases carry explanations
    (``--uncertainty``, classifier saliency), the HTML gets a "where to look first" section and
    ``metrics.json``'s summary an ``explanations`` list (case, values; no images).

    Returns:
        ``{"csv": path, "json": path, "html": path}``.
    """
    out = Path(out_dir)
    summary = summarise(rows) if summary is None else summary
    settings = settings if settings is not None else {}
    cases = sorted({str(r.case) for r in rows}) or None
    explanations = collect_explanations(settings.get("prediction"), cases)
    if any(explanations.values()):  # values only in the JSON; the thumbnails are hidden fields
        summary = dataclasses.replace(summary, explanations={k: v for k, v in explanations.items() if v})
    return {
        "csv": write_csv(rows, out / "metrics.csv"),
        "json": write_json(rows, summary, settings, out / "metrics.json"),
        "html": write_html(rows, summary, settings, out / "report.html", thumbnails, explanations),
    }
