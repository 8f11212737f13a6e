"""Classification report: ``classification.json`` and a self-contained ``classification.html``.

Metrics come from :mod:`medannot.evaluation.classification`; the page shows the
verdict in words, per-class table, confusion matrix, ROC curves (one class against
the rest) and the reliability diagram. Inline CSS and base64 PNG only.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.classification import ClassificationMetrics, Reliability, RocCurve
from medannot.evaluation.record import Record

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
    from medannot.evaluation.classification import classification_metrics, reliability_diagram, roc_curve_points

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
    out_dir: str | Path, y_true: Any, y_prob: Any, class_names: Sequence[str], n_bins: int = 10, explanations_html: str = ""
) -> dict[str, Path]:
    """Write ``classification.json`` and ``classification.html`` into ``out_dir`` (atomic).

    Args:
        out_dir: Output folder (created if needed).
        y_true, y_prob, class_names, n_bins: As :func:`classification_report`.
        explanations_html: The "where to look first" section (:mod:`medannot.evaluation.report_explanations`),
            shown after the verdict; "" for none.

    Returns:
        ``{"json": path, "html": path}``.

    Raises:
        InputError: Unknown labels, shapes that do not match, fewer than two classes.
    """
    return write_classification_files(out_dir, classification_report(y_true, y_prob, class_names, n_bins), explanations_html)


def write_classification_files(out_dir: str | Path, report: ClassificationReport, explanations_html: str = "") -> dict[str, Path]:
    """Write ``classification.json`` and ``classification.html`` of ``report`` into ``out_dir`` (atomic).

    Returns:
        ``{"json": path, "html": path}``.
    """
    from medannot.evaluation.record import dumps_json
    from medannot.evaluation.report import versions
    from medannot.evaluation.report_html import CSS
    from medannot.evaluation.report_plots import reliability_png, roc_png
    from medannot.io.atomic import atomic_write_text

    names, metrics, curves, rel = report.class_names, report.metrics, report.roc, report.reliability
    out = Path(out_dir)
    doc = {
        **report.to_dict(),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    json_path = atomic_write_text(out / "classification.json", dumps_json(doc) + "\n")

    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    per = metrics["per_class"]
    auc = metrics["roc_auc_per_class"] or {}
    rows = "".join(
        f"<tr><td class=t>{html.escape(n)}</td><td>{per[n]['support']}</td><td>{f(per[n]['precision'])}</td>"
        f"<td>{f(per[n]['recall'])}</td><td>{f(per[n]['f1'])}</td><td>{f(auc.get(n))}</td></tr>" for n in names
    )
    cm = metrics["confusion_matrix"]
    cm_html = ("<table><tr><th class=t>truth \\ predicted</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
               + "".join(f"<tr><th class=t>{html.escape(names[i])}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for i, row in enumerate(cm))
               + "</table>")
    plots = [roc_png({k: c for k, c in curves.items() if c.get("fpr") and c.get("tpr")}),
             reliability_png([c if c is not None else np.nan for c in rel["bin_confidence"]],
                             [a if a is not None else np.nan for a in rel["bin_accuracy"]], rel["bin_count"], rel["ece"])]
    imgs = "".join(f"<img alt='plot' src='data:image/png;base64,{p}'>" for p in plots if p)
    verdict = (f"Accuracy <b>{metrics['accuracy']:.2f}</b> on {metrics['n']} samples, balanced accuracy {f(metrics['balanced_accuracy'])}, "
               f"ROC AUC {f(metrics['roc_auc'])}, expected calibration error {f(metrics['ece'])} "
               "(0 = confidences match observed accuracy).")
    flags = "".join(f"<li>{html.escape(x)}</li>" for x in metrics["flags"])
    page = "\n".join([
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>medannot classification report</title>",
        f"<style>{CSS}</style></head><body><h1>Classification evaluation</h1>",
        f"<div class=verdict><b>In short</b><p>{verdict}</p></div>",
        f"<div class=note><ul>{flags}</ul></div>" if flags else "",
        explanations_html,
        "<h2>Per class</h2><table><tr><th class=t>class</th><th>n</th><th>precision</th><th>recall</th><th>F1</th><th>ROC AUC</th></tr>"
        f"{rows}</table>",
        f"<h2>Confusion matrix</h2>{cm_html}",
        f"<h2>ROC and calibration</h2><div class=plots>{imgs}</div>",
        "<h2>How to read this</h2><dl><dt>ROC curve</dt><dd>Sensitivity against 1 - specificity as the probability threshold "
        "is lowered, one class against all others; AUC 0.5 = chance, 1 = perfect ranking.</dd><dt>Reliability diagram</dt>"
        "<dd>Predictions grouped by their confidence: a well calibrated model is right 80% of the time when it says 80% "
        "(points on the diagonal). ECE is the average gap, weighted by the number of samples per bin.</dd></dl>",
        f"<p class=muted>{html.escape(json.dumps(versions()))}</p></body></html>",
    ])
    html_path = atomic_write_text(out / "classification.html", page)
    return {"json": json_path, "html": html_path}
