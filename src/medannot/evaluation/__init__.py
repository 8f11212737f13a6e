"""Evaluation: pure metric functions, an accumulator, reports (CSV/JSON/HTML) and a path runner.

``segmentation_metrics`` and the accumulator import only NumPy/SciPy; the report
(matplotlib) and the runner (file I/O) are imported lazily by attribute access.
"""

from __future__ import annotations

from typing import Any

from medannot.evaluation.accumulate import SegmentationAccumulator
from medannot.evaluation.metrics import (
    Empty,
    SurfaceDistances,
    assd,
    dice,
    hausdorff,
    hd95,
    hd95_pooled,
    iou,
    precision,
    recall,
    segmentation_metrics,
    specificity,
    surface_dice,
    surface_distances,
    volume_difference,
    worst_distance,
)

__all__ = [
    "Empty",
    "EvaluationResult",
    "SegmentationAccumulator",
    "SurfaceDistances",
    "assd",
    "dice",
    "evaluate_paths",
    "hausdorff",
    "hd95",
    "hd95_pooled",
    "iou",
    "precision",
    "recall",
    "segmentation_metrics",
    "specificity",
    "surface_dice",
    "surface_distances",
    "volume_difference",
    "worst_distance",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in ("evaluate_paths", "EvaluationResult"):
        from medannot.evaluation import runner

        return getattr(runner, name)
    if name == "write_report":
        from medannot.evaluation.report import write_report

        return write_report
    raise AttributeError(f"module 'medannot.evaluation' has no attribute {name!r}")
