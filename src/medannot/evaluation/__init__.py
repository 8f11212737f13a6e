"""Evaluation: pure metric functions, accumulators, typed results and reports (CSV/JSON/HTML).

Entry points, one per task (what the task registry calls; each writes its report files into ``out_dir`` and
returns a typed result with ``summary_line()`` for the console and ``to_dict()`` / ``to_json()`` for machines,
see :class:`~medannot.evaluation.results.TaskEvaluation`):

- segmentation: ``evaluate_paths(pred, truth, out_dir, labels=None, resample=False, tolerance_mm=1.0,
  max_workers=None, lesions=False, match="iou", match_threshold=0.5, manifest=None, max_thumbnails=24)
  -> EvaluationResult`` (:mod:`medannot.evaluation.runner`): label files or folders against reference
  labels; ``metrics.csv``, ``metrics.json``, ``report.html``.
- detection: ``evaluate_boxes(pred, truth, out_dir, froc_iou=0.1, max_detections=300) -> BoxEvaluation``
  (:mod:`medannot.evaluation.boxes_eval`): boxes of ``annotation.json`` files against a COCO file or
  instance masks; ``boxes_metrics.json`` / ``.csv``.
- classification: ``evaluate_classifications(pred, truth, out_dir, n_bins=10) -> ClassificationEvaluation``
  (:mod:`medannot.evaluation.classification_run`): ``classifications.csv`` against a truth CSV;
  ``classification.json``, ``classification.html``.

Readers' agreement (``medannot agree``): ``run_agreement(readers, out, labels=None, consensus="staple",
tie="background") -> AgreementResult`` (:mod:`medannot.evaluation.agreement_run`).

Metrics follow MONAI's pattern: a pure function on arrays (``segmentation_metrics``, ``lesion_metrics``,
``classification_metrics``, ``average_precision`` ...) and an accumulator with ``update / compute / reset``
(:class:`SegmentationAccumulator`, ``FrocAccumulator``, ``ClassificationAccumulator``,
``DetectionAccumulator``). Results are frozen dataclasses (:class:`~medannot.evaluation.record.Record`)
serialised only at the edge, as strict JSON (no NaN).

``segmentation_metrics`` and the segmentation accumulator import only NumPy/SciPy; everything else is
imported on first attribute access.
"""

from __future__ import annotations

from typing import Any

from medannot.evaluation.accumulate import SegmentationAccumulator
from medannot.evaluation.metrics import (
    Empty,
    SegmentationMetrics,
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
    "runner": ("evaluate_paths",),
    "results": ("EvaluationResult", "MetricRow", "SegmentationSummary", "TaskEvaluation"),
    "record": ("Record",),
    "accumulate": ("FrocAccumulator",),
    "boxes_eval": ("evaluate_boxes", "BoxEvaluation"),
    "classification_run": ("evaluate_classifications", "ClassificationEvaluation"),
    "agreement_run": ("run_agreement", "AgreementResult"),
    "report": ("write_report",),
    "instances": (
        "Criterion", "Matching", "match_instances", "lesion_metrics", "panoptic_quality", "froc", "froc_from_hits",
        "LUNA16_FP_RATES", "FrocCurve", "LesionMetrics", "PanopticQuality",
    ),
    "detection": ("box_iou", "average_precision", "recall_at_k", "detection_froc", "DetectionAccumulator"),
    "classification": ("classification_metrics", "roc_auc", "roc_curve_points", "reliability_diagram", "ClassificationAccumulator"),
    "agreement": ("Kappa", "Tie", "agreement_summary", "cohen_kappa", "fleiss_kappa", "majority_vote", "pairwise_agreement"),
    "staple": ("MultiLabelStaple", "StapleResult", "staple", "staple_labels"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "Empty",
    "SegmentationAccumulator",
    "SegmentationMetrics",
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
