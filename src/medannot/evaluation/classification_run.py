"""``medannot evaluate OUT truth.csv``: score a classifier's ``classifications.csv`` against true classes.

The truth CSV has a ``label`` column and either ``case`` (the case names of ``medannot annotate``) or ``path``
(an image file; its case name is the file name without the image suffix). Every true label must be one of the
model's classes (the ``p_<class>`` columns of ``classifications.csv``): anything else is refused with one line
before a file is written. Cases without a prediction are listed and not scored; predictions without a truth
row are ignored (and counted).

Writes ``classification.json`` and ``classification.html`` (:func:`write_classification_report`); the page gets
the "where to look first" section of :mod:`medannot.evaluation.report_explanations` (least confident cases
first, with their Grad-CAM overlays).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medannot.errors import InputError
from medannot.evaluation.classification import ClassificationMetrics
from medannot.evaluation.record import Record

__all__ = ["ClassificationEvaluation", "evaluate_classifications"]


@dataclass(frozen=True, eq=False, repr=False)
class ClassificationEvaluation(Record):
    """Outcome of :func:`evaluate_classifications`.

    Attributes:
        metrics: Accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC, ECE, Brier (classes by name;
            see :func:`medannot.evaluation.classification.classification_metrics`).
        n: Scored cases.
        missing_predictions: Truth cases without a prediction (not scored).
        unmatched_predictions: Number of predictions without a truth row (ignored).
        paths: ``{"json", "html"}`` files written.
    """

    metrics: ClassificationMetrics
    n: int
    missing_predictions: list[str]
    unmatched_predictions: int
    paths: dict[str, Path]

    def summary_line(self) -> str:
        """``"12 cases: accuracy 0.917, balanced accuracy 0.900, macro F1 0.905, ECE 0.041"``."""
        m = self.metrics

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        return (f"{self.n} cases: accuracy {f(m['accuracy'])}, balanced accuracy {f(m['balanced_accuracy'])}, "
                f"macro F1 {f(m['macro_f1'])}, ECE {f(m['ece'])}")


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise InputError("CSV file not found", path) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"unreadable CSV ({exc})", path) from None


def evaluate_classifications(pred: str | Path, truth: str | Path, out_dir: str | Path, n_bins: int = 10) -> ClassificationEvaluation:
    """Score ``pred/classifications.csv`` against the truth CSV and write the report into ``out_dir``.

    The classification task's evaluation entry point.

    Args:
        pred: A ``medannot annotate --model <classifier> --out`` folder.
        truth: CSV with ``label`` and ``case`` or ``path`` columns.
        out_dir: Report folder (created).
        n_bins: Confidence bins of the reliability diagram and ECE.

    Returns:
        :class:`ClassificationEvaluation` (``metrics``, ``n`` scored cases, ``missing_predictions``,
        ``unmatched_predictions``, ``paths``).

    Raises:
        InputError: Missing columns, unknown class names, duplicate cases, or no case in common (all one line;
            nothing is written).
    """
    from medannot.evaluation.report_classification import (
        classification_report,
        write_classification_files,
    )
    from medannot.evaluation.report_explanations import (
        Explanations,
        collect_explanations,
        explanation_view,
    )
    from medannot.evaluation.runner import case_name

    pred_p, truth_p = Path(pred), Path(truth)
    pred_rows = _read_csv(pred_p / "classifications.csv")
    if not pred_rows:
        raise InputError("classifications.csv lists no classified case", pred_p / "classifications.csv")
    classes = [c[2:] for c in pred_rows[0] if c.startswith("p_")]
    if len(classes) < 2:
        raise InputError("classifications.csv has no p_<class> columns; write it again with medannot annotate", pred_p)
    truth_rows = _read_csv(truth_p)
    columns = set(truth_rows[0]) if truth_rows else set()
    if "label" not in columns or not columns & {"case", "path"}:
        raise InputError(f"the truth CSV needs a 'label' column and a 'case' or 'path' column, found {sorted(columns)}", truth_p)
    truth_by_case: dict[str, str] = {}
    for i, row in enumerate(truth_rows, start=2):
        case = (row.get("case") or "").strip() or case_name((row.get("path") or "").strip())
        if not case:
            raise InputError(f"row {i} names no case", truth_p)
        if case in truth_by_case:
            raise InputError(f"row {i}: case {case!r} is listed twice", truth_p)
        truth_by_case[case] = (row.get("label") or "").strip()
    unknown = sorted(set(truth_by_case.values()) - set(classes))
    if unknown:
        raise InputError(f"true labels {unknown} are not classes of the model ({', '.join(classes)}); fix the names", truth_p)
    pred_by_case = {r["case"]: r for r in pred_rows}
    cases = sorted(set(truth_by_case) & set(pred_by_case))
    if not cases:
        raise InputError(f"no case of the truth CSV has a prediction (truth: {', '.join(sorted(truth_by_case)[:5])}; "
                         f"predicted: {', '.join(sorted(pred_by_case)[:5])})", truth_p)
    try:
        prob = np.array([[float(pred_by_case[c][f"p_{k}"]) for k in classes] for c in cases])
    except (KeyError, ValueError) as exc:
        raise InputError(f"classifications.csv has an unreadable probability ({exc})", pred_p / "classifications.csv") from None
    y_true = [truth_by_case[c] for c in cases]
    explanations = collect_explanations(pred_p, cases)
    report = classification_report(y_true, prob, classes, n_bins=n_bins)
    view = explanation_view(Explanations(classification=explanations.classification), truth={c: truth_by_case[c] for c in cases})
    paths = write_classification_files(out_dir, report, view)
    return ClassificationEvaluation(
        metrics=report.metrics,
        n=len(cases),
        missing_predictions=sorted(set(truth_by_case) - set(pred_by_case)),
        unmatched_predictions=len(set(pred_by_case) - set(truth_by_case)),
        paths=paths,
    )
