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

#: Imported on first use: module -> names (keeps ``import medannot.evaluation`` light).
_LAZY: dict[str, tuple[str, ...]] = {
    "runner": ("evaluate_paths", "EvaluationResult"),
    "report": ("write_report",),
    "instances": (
        "Criterion", "Matching", "match_instances", "lesion_metrics", "panoptic_quality", "froc", "froc_from_hits",
        "LUNA16_FP_RATES",
    ),
    "detection": ("box_iou", "average_precision", "recall_at_k", "detection_froc"),
    "classification": ("classification_metrics", "roc_auc", "roc_curve_points", "reliability_diagram"),
    "agreement": ("Kappa", "Tie", "agreement_summary", "cohen_kappa", "fleiss_kappa", "majority_vote", "pairwise_agreement"),
    "staple": ("MultiLabelStaple", "StapleResult", "staple", "staple_labels"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "Empty",
    "SegmentationAccumulator",
    "SurfaceDistances",
    "assd",
    "dice",
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
    *_LAZY_NAMES,
]


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'medannot.evaluation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"medannot.evaluation.{module}"), name)
