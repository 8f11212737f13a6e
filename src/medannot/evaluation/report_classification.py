"""Classification report: ``classification.json`` and a self-contained ``classification.html``.

Metrics come from :mod:`medannot.evaluation.classification`; the page (a Jinja2 template with the one
stylesheet inlined, :mod:`medannot.templates`) shows the verdict in words, per-class table, confusion matrix,
ROC curves (one class against the rest) and the reliability diagram, as base64 PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.classification import (
    ClassificationMetrics,
    Reliability,
    RocCurve,
)
from medannot.evaluation.record import Record
from medannot.evaluation.report_explanations import ExplanationView

__all__ = ["ClassificationReport", "classification_report", "write_classification_report"]


@dataclass(frozen=True, eq=False, repr=False)
class ClassificationReport(Record):
    """Everything ``classification.json`` reports, classes by name.

    Attributes:
        class_names: The classes (K >= 2).
        metrics: :func:`~medannot.evaluation.classification.classification_metrics` with ``labels``,
            ``per_class`` and ``roc_auc_per_class`` keyed by class name.
        roc: Class name -> ROC curve of that class against the rest (two classes: the second class only).
        reliability: Top-label reliability diagram and calibration errors.
    """

    class_names: list[str]
    metrics: ClassificationMetrics
    roc: dict[str, RocCurve]
    reliability: Reliability


def _indices(y_true: Any, class_names: Sequence[str]) -> np.ndarray:
    """``y_true`` as class indices: integers 0..K-1, or the class names themselves."""
    yt = np.asarray(y_true).reshape(-1)
    names = [str(c) for c in class_names]
    if yt.dtype.kind in "iub":
        idx = yt.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
            raise InputError(f"y_true holds class indices outside 0..{len(names) - 1}; give indices into class_names or the names")
        return idx
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(v) for v in yt} - set(lookup))
    if unknown:
        raise InputError(f"y_true holds labels {unknown[:5]} that are not in class_names {names}; fix the names")
    return np.array([lookup[str(v)] for v in yt], dtype=np.int64)


def classification_report(y_true: Any, y_prob: Any, class_names: Sequence[str], n_bins: int = 10) -> ClassificationReport:
    """Metrics, ROC curves and reliability diagram of one set of predictions, classes by name.

    Args:
        y_true: (N,) true classes, as indices into ``class_names`` or as the names.
        y_prob: (N, K) class probabilities in the order of ``class_names`` (rows sum to 1), or
            (N,) probabilities of ``class_names[1]`` for two classes.
        class_names: Class names, K >= 2.
        n_bins: Equal-width confidence bins of the reliability diagram and ECE.

    Raises:
        InputError: Unknown labels, shapes that do not match, fewer than two classes, no sample.
    """
    from medannot.evaluation.classification import (
        classification_metrics,
        reliability_diagram,
        roc_curve_points,
    )

    names = [str(c) for c in class_names]
    if len(names) < 2:
        raise InputError(f"class_names needs at least two classes, got {names}")
    t = _indices(y_true, names)
    prob = np.asarray(y_prob, dtype=np.float64)
    labels = list(range(len(names)))
    metrics = classification_metrics(t, y_prob=prob, labels=labels, n_bins=n_bins)
    rel = reliability_diagram(t, prob, n_bins=n_bins, labels=labels)
    full = prob if prob.ndim == 2 else np.stack([1.0 - prob, prob], axis=1)
    which = range(len(names)) if len(names) > 2 else [1]
    curves = {names[k]: roc_curve_points(t == k, full[:, k], pos_label=True) for k in which}
    auc = metrics["roc_auc_per_class"]
    by_name: ClassificationMetrics = {
        **metrics,
        "labels": names,
        "per_class": {names[int(k)]: v for k, v in metrics["per_class"].items()},
        "roc_auc_per_class": None if auc is None else {names[int(k)]: v for k, v in auc.items()},
    }
    return ClassificationReport(class_names=names, metrics=by_name, roc=curves, reliability=rel)


def write_classification_report(
    out_dir: str | Path, y_true: Any, y_prob: Any, class_names: Sequence[str], n_bins: int = 10,
    explanations: ExplanationView | None = None,
) -> dict[str, Path]:
    """Write ``classification.json`` and ``classification.html`` into ``out_dir`` (atomic).

    Args:
        out_dir: Output folder (created if needed).
        y_true, y_prob, class_names, n_bins: As :func:`classification_report`.
        explanations: The "where to look first" section (:func:`medannot.evaluation.report_explanations.explanation_view`),
            shown after the verdict; None for none.

    Returns:
        ``{"json": path, "html": path}``.

    Raises:
        InputError: Unknown labels, shapes that do not match, fewer than two classes.
    """
    return write_classification_files(out_dir, classification_report(y_true, y_prob, class_names, n_bins), explanations)


def write_classification_files(out_dir: str | Path, report: ClassificationReport, explanations: ExplanationView | None = None) -> dict[str, Path]:
    """Write ``classification.json`` and ``classification.html`` of ``report`` into ``out_dir`` (atomic).

    The page (``medannot/templates/classification_report.html``): the verdict in words, flags (undefined values),
    where to look first, per-class table, confusion matrix, ROC curves and reliability diagram, how to read them.

    Returns:
        ``{"json": path, "html": path}``.
    """
    from medannot.evaluation.record import dumps_json
    from medannot.evaluation.report import versions
    from medannot.evaluation.report_plots import reliability_png, roc_png
    from medannot.io.atomic import atomic_write_text
    from medannot.templates import render

    rel = report.reliability
    out = Path(out_dir)
    lib = versions()
    doc = {**report.to_dict(), "versions": lib, "created": datetime.now(UTC).isoformat(timespec="seconds")}
    json_path = atomic_write_text(out / "classification.json", dumps_json(doc) + "\n")
    plots = [roc_png({k: c for k, c in report.roc.items() if c.get("fpr") and c.get("tpr")}),
             reliability_png([c if c is not None else np.nan for c in rel["bin_confidence"]],
                             [a if a is not None else np.nan for a in rel["bin_accuracy"]], rel["bin_count"], rel["ece"])]
    page = render("classification_report.html", names=report.class_names, m=report.metrics, auc=report.metrics["roc_auc_per_class"] or {},
                  plots=[p for p in plots if p], explanations=explanations, versions_json=json.dumps(lib))
    html_path = atomic_write_text(out / "classification.html", page)
    return {"json": json_path, "html": html_path}
