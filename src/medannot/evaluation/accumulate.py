"""Accumulate per-case, per-label metric rows and summarise them (update / compute / reset)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from medannot.evaluation.metrics import segmentation_metrics

__all__ = ["FIRST_COLUMNS", "SUMMARY_METRICS", "SegmentationAccumulator", "summarise"]

#: The columns every row starts with, in this order (the CSV header starts with them).
FIRST_COLUMNS = ("case", "label", "dice", "iou", "precision", "recall", "hd95", "hd95_pooled", "assd")

#: Numeric metrics summarised per label, in report order.
SUMMARY_METRICS = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "hd95_pooled",
    "assd",
    "specificity",
    "hausdorff",
    "surface_dice",
    "volume_difference",
    "truth_volume",
    "pred_volume",
)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        # Sample standard deviation; undefined (None) for a single case.
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "median": float(np.median(arr)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of metric rows: per label and metric mean, sample std, median, min, max, n.

    Rows with an empty mask are *included* in every statistic with their
    documented finite values (see :mod:`medannot.evaluation.metrics`) and also
    listed explicitly under ``"empty_cases"`` with counts per kind.

    Args:
        rows: Dicts with at least ``case``, ``label``, ``empty`` and the metrics.

    Returns:
        ``{"labels": {label: {metric: stats}}, "n_cases": int, "n_rows": int,
        "empty_counts": {label: {"truth": n, "prediction": n, "both": n}},
        "empty_cases": [{"case", "label", "empty"}, ...]}``. ``std`` is None
        when a label has a single case. Empty input gives empty sections.
    """
    labels: dict[str, dict[str, list[float]]] = {}
    empty_cases: list[dict[str, str]] = []
    empty_counts: dict[str, dict[str, int]] = {}
    for row in rows:
        label = str(row["label"])
        per_metric = labels.setdefault(label, {})
        counts = empty_counts.setdefault(label, {"truth": 0, "prediction": 0, "both": 0})
        for metric in SUMMARY_METRICS:
            value = row.get(metric)
            if value is not None and isinstance(value, (int, float)) and math.isfinite(value):
                per_metric.setdefault(metric, []).append(float(value))
        kind = str(row.get("empty", "") or "")
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
            empty_cases.append({"case": str(row["case"]), "label": label, "empty": kind})
    return {
        "labels": {label: {m: _stats(v) for m, v in per_metric.items()} for label, per_metric in labels.items()},
        "n_cases": len({str(r["case"]) for r in rows}),
        "n_rows": len(rows),
        "empty_counts": empty_counts,
        "empty_cases": empty_cases,
    }


class SegmentationAccumulator:
    """Collects one metric row per (case, label) and summarises them.

    Args:
        tolerance_mm: Surface Dice tolerance in mm used by :meth:`update`.

    Example:
        >>> acc = SegmentationAccumulator()
        >>> acc.update("case1", "liver", pred == 1, truth == 1, spacing=(2.0, 0.8, 0.8))  # doctest: +SKIP
        >>> acc.compute()["labels"]["liver"]["dice"]["mean"]  # doctest: +SKIP
    """

    def __init__(self, tolerance_mm: float = 1.0) -> None:
        self.tolerance_mm = float(tolerance_mm)
        self.rows: list[dict[str, Any]] = []

    def update(self, case: str, label_name: str, pred_mask: Any, truth_mask: Any, spacing: Sequence[float]) -> dict[str, Any]:
        """Compute :func:`segmentation_metrics` for one case and label and store the row.

        Returns:
            The row: ``case``, ``label``, then the metrics (see ``FIRST_COLUMNS``).
        """
        metrics = segmentation_metrics(pred_mask, truth_mask, spacing, tolerance_mm=self.tolerance_mm)
        return self.add_row({"case": str(case), "label": str(label_name), **metrics})

    def add_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Store an already computed row (e.g. from a worker process), columns put in canonical order."""
        ordered = {k: row[k] for k in FIRST_COLUMNS if k in row}
        ordered.update({k: v for k, v in row.items() if k not in ordered})
        self.rows.append(ordered)
        return ordered

    def compute(self) -> dict[str, Any]:
        """Summary of all rows so far (see :func:`summarise`)."""
        return summarise(self.rows)

    def reset(self) -> None:
        """Forget all rows."""
        self.rows = []

    def __len__(self) -> int:
        return len(self.rows)
