"""Typed results of a segmentation evaluation: per case/label rows, per-label summaries, the run result.

Every class is a :class:`~medannot.evaluation.record.Record`: typed attributes, a read-only mapping view with
the keys (and key order) of ``metrics.json``, and ``to_dict()`` / ``to_json()`` for the edge. The result of
each task's entry point (segmentation :class:`EvaluationResult`, boxes, classification, agreement) also has
``summary_line()``, a one-line verdict for the console (the :class:`TaskEvaluation` protocol).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Protocol,
    runtime_checkable,
)

from medannot.evaluation.metrics import Empty, SegmentationMetrics
from medannot.evaluation.record import FLATTEN, HIDDEN, OPTIONAL, Record

if TYPE_CHECKING:  # annotations only: keeps ``import medannot.evaluation`` light
    from medannot.evaluation.instances import FrocCurve, LesionMetrics, PanopticQuality
    from medannot.evaluation.manifest import ManifestBreakdown
    from medannot.evaluation.thumbnails import Thumbnail

__all__ = [
    "FIRST_COLUMNS",
    "GRID_ATOL_MM",
    "LESION_COLUMNS",
    "SUMMARY_METRICS",
    "EmptyCase",
    "EmptyCounts",
    "EvaluationResult",
    "FrocSummary",
    "LesionColumns",
    "LesionSummary",
    "MetricRow",
    "SegmentationSettings",
    "SegmentationSummary",
    "Stats",
    "TaskEvaluation",
    "worst_first",
]

#: Largest difference (mm) between the affines of two grids still treated as the same grid.
GRID_ATOL_MM = 1e-4

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

#: Lesion columns added to each row when lesion evaluation is on, in order.
LESION_COLUMNS = (
    "lesion_sensitivity",
    "lesion_precision",
    "lesion_f1",
    "false_positives",
    "lesion_tp",
    "lesion_fn",
    "n_truth_lesions",
    "n_pred_lesions",
    "lesion_mean_iou",
    "pq",
    "sq",
    "rq",
)


@runtime_checkable
class TaskEvaluation(Protocol):
    """What every evaluation entry point returns (segmentation, boxes, classification, agreement)."""

    def summary_line(self) -> str:
        """One line for the console."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready containers (what ``--print json`` prints)."""
        ...

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON text of :meth:`to_dict`."""
        ...


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, eq=False, repr=False)
class LesionColumns(Record):
    """Lesion-wise columns of one case and label (definitions: :func:`medannot.evaluation.instances.lesion_metrics`
    and ``panoptic_quality``; lesion counts, ratios 0..1)."""

    lesion_sensitivity: float
    lesion_precision: float
    lesion_f1: float
    false_positives: int
    lesion_tp: int
    lesion_fn: int
    n_truth_lesions: int
    n_pred_lesions: int
    lesion_mean_iou: float
    pq: float
    sq: float
    rq: float

    @classmethod
    def of(cls, lesions: LesionMetrics, panoptic: PanopticQuality) -> LesionColumns:
        """The columns of one case from its lesion metrics and panoptic quality."""
        return cls(
            lesion_sensitivity=lesions.lesion_sensitivity,
            lesion_precision=lesions.lesion_precision,
            lesion_f1=lesions.lesion_f1,
            false_positives=lesions.false_positives,
            lesion_tp=lesions.tp,
            lesion_fn=lesions.fn,
            n_truth_lesions=lesions.n_truth,
            n_pred_lesions=lesions.n_pred,
            lesion_mean_iou=lesions.mean_iou,
            pq=panoptic.pq,
            sq=panoptic.sq,
            rq=panoptic.rq,
        )


@dataclass(frozen=True, eq=False, repr=False)
class MetricRow(Record):
    """One case and label: the metrics, optional lesion columns, the label value and manifest columns.

    The mapping view (and the CSV/JSON row) is flat: ``case, label, dice, iou, precision, recall, hd95,
    hd95_pooled, assd``, the other metrics, the lesion columns, ``label_value``, then the manifest columns.

    Attributes:
        case: Case name.
        label: Label name.
        metrics: :class:`~medannot.evaluation.metrics.SegmentationMetrics` of the pair.
        lesions: Lesion columns, or None when lesions were not evaluated.
        label_value: The label's value in the label maps (None when the row was added by name only).
        extra: Manifest columns of the case (text).
    """

    case: str
    label: str
    metrics: SegmentationMetrics = field(metadata=FLATTEN)
    lesions: LesionColumns | None = field(default=None, metadata=FLATTEN)
    label_value: int | None = field(default=None, metadata=OPTIONAL)
    extra: Mapping[str, str] = field(default_factory=dict, metadata=FLATTEN)

    @property
    def empty(self) -> Empty:
        """Which mask of the pair is empty (see :class:`~medannot.evaluation.metrics.Empty`)."""
        return self.metrics.empty

    def _pairs(self) -> Iterator[tuple[str, Any]]:
        yield "case", self.case
        yield "label", self.label
        metrics = self.metrics
        for key in FIRST_COLUMNS[2:]:
            yield key, metrics[key]
        for key, value in metrics.items():
            if key not in FIRST_COLUMNS:
                yield key, value
        if self.lesions is not None:
            yield from self.lesions.items()
        if self.label_value is not None:
            yield "label_value", self.label_value
        yield from self.extra.items()


def worst_first(row: MetricRow) -> tuple[float, float, str, str]:
    """Sort key of rows, worst first: lowest Dice, then largest HD95, then case and label."""
    return (float(row.metrics.dice), -float(row.metrics.hd95), str(row.case), str(row.label))


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, eq=False, repr=False)
class Stats(Record):
    """Statistics of one metric over cases: n, mean, sample standard deviation (None for one case), median, min, max."""

    n: int
    mean: float
    std: float | None
    median: float
    min: float
    max: float


@dataclass(frozen=True, eq=False, repr=False)
class EmptyCounts(Record):
    """Cases of one label where the truth, the prediction or both masks are empty."""

    truth: int = 0
    prediction: int = 0
    both: int = 0


@dataclass(frozen=True, eq=False, repr=False)
class EmptyCase(Record):
    """A case and label with an empty mask (listed in the summary, never dropped from it)."""

    case: str
    label: str
    empty: Empty


@dataclass(frozen=True, eq=False, repr=False)
class LesionSummary(Record):
    """Lesion totals of one label over cases: counts, pooled sensitivity/precision/F1 (None for 0/0), FP per case, means
    (None when the label is absent from both masks of every case)."""

    n_cases: int
    n_truth: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    sensitivity: float | None
    precision: float | None
    f1: float | None
    fp_per_case: float
    mean_lesion_f1: float | None
    mean_pq: float | None


@dataclass(frozen=True, eq=False, repr=False)
class FrocSummary(Record):
    """FROC per label over all cases (``curves`` and the ``fp_rates`` read), or why it was ``skipped``."""

    curves: dict[str, FrocCurve] | None = field(default=None, metadata=OPTIONAL)
    fp_rates: list[float] | None = field(default=None, metadata=OPTIONAL)
    skipped: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, eq=False, repr=False)
class SegmentationSummary(Record):
    """Summary of a segmentation evaluation (``metrics.json``'s ``summary``).

    Attributes:
        labels: Label -> metric -> :class:`Stats` over cases (a missed structure or false alarm included with its
            finite values; a label absent from both masks left out unless ``include_absent``).
        n_cases: Distinct cases.
        n_rows: Case/label rows.
        empty_counts: Label -> :class:`EmptyCounts`.
        empty_cases: Every row with an empty mask.
        missing_predictions: Truth cases without a prediction (not scored unless ``missing_as_empty``).
        unmatched_predictions: Predictions without a truth (not scored).
        lesions: Label -> :class:`LesionSummary` (lesion evaluation only).
        froc: :class:`FrocSummary` (lesion evaluation only).
        manifest: Breakdown by manifest columns (with a manifest only).
        explanations: Kind -> cases ranked by the annotation run's explanations (values only, no images).
    """

    labels: dict[str, dict[str, Stats]]
    n_cases: int
    n_rows: int
    empty_counts: dict[str, EmptyCounts]
    empty_cases: list[EmptyCase]
    missing_predictions: list[str] | None = field(default=None, metadata=OPTIONAL)
    unmatched_predictions: list[str] | None = field(default=None, metadata=OPTIONAL)
    lesions: dict[str, LesionSummary] | None = field(default=None, metadata=OPTIONAL)
    froc: FrocSummary | None = field(default=None, metadata=OPTIONAL)
    manifest: ManifestBreakdown | None = field(default=None, metadata=OPTIONAL)
    explanations: dict[str, Sequence[Record]] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, eq=False, repr=False)
class SegmentationSettings(Record):
    """Settings a segmentation evaluation ran with (``metrics.json``'s ``settings``)."""

    prediction: str
    truth: str
    labels: dict[str, str] | None
    resample: bool
    tolerance_mm: float
    grid_atol_mm: float = GRID_ATOL_MM
    surface: str = "boundary voxels by erosion with face connectivity (6 in 3D, 4 in 2D); image outside is background"
    distances: str = "exact Euclidean distance transform with voxel spacing (mm), union bounding box + 1 voxel"
    hd95: str = "max of the two directed 95th percentiles (MONAI); hd95_pooled: percentile of pooled distances (MedPy)"
    empty_rule: str = (
        "both empty: overlap metrics 1, distances 0; one empty: overlap 0, distances = image diagonal (mm), flagged"
    )
    lesions: bool = False
    workers: int = 1
    match: str | None = field(default=None, metadata=OPTIONAL)
    match_threshold: float | None = field(default=None, metadata=OPTIONAL)
    lesion_definition: str | None = field(default=None, metadata=OPTIONAL)
    manifest: str | None = field(default=None, metadata=OPTIONAL)
    missing_as_empty: bool = False
    include_absent: bool = False
    missing_rule: str = "truth cases without a prediction are listed and not scored (with missing_as_empty: scored as empty)"
    absent_rule: str = ("a label absent from both masks of a case: row flagged empty='both', left out of the summary statistics "
                        "(with include_absent: counted as Dice 1, distance 0)")


@dataclass(frozen=True, eq=False, repr=False)
class EvaluationResult(Record):
    """Outcome of :func:`medannot.evaluation.evaluate_paths` (segmentation).

    Attributes:
        summary: Per-label statistics, empty cases, missing/unmatched cases and the optional sections.
        settings: The settings the evaluation ran with.
        paths: ``{"csv", "json", "html"}`` files written.
        missing_predictions: Truth cases without a prediction (not scored unless ``missing_as_empty``).
        unmatched_predictions: Predictions without a truth (not scored).
        rows: One :class:`MetricRow` per case and label.
        thumbnails: ``{(case, label): Thumbnail}`` overlay thumbnails shown in the HTML (not serialised).
    """

    summary: SegmentationSummary
    settings: SegmentationSettings
    paths: dict[str, Path]
    missing_predictions: list[str]
    unmatched_predictions: list[str]
    rows: list[MetricRow]
    thumbnails: dict[tuple[str, str], Thumbnail] = field(default_factory=dict, metadata=HIDDEN)

    def summary_line(self) -> str:
        """``"3 cases: liver Dice 0.912, tumour Dice 0.710; 1 without prediction; report: out/report.html"``."""
        parts = []
        lesions = self.summary.lesions or {}
        for label, stats in self.summary.labels.items():
            dice = stats.get("dice")
            text = f"{label} Dice {dice.mean:.3f}" if dice is not None else f"{label} Dice -"
            les = lesions.get(label)
            if les is not None and les.f1 is not None:
                text += f" (lesion F1 {les.f1:.3f})"
            parts.append(text)
        n = self.summary.n_cases
        line = f"{n} case{'' if n == 1 else 's'}: " + (", ".join(parts) or "nothing evaluated")
        if self.missing_predictions:
            line += f"; {len(self.missing_predictions)} without prediction"
        if self.unmatched_predictions:
            line += f"; {len(self.unmatched_predictions)} prediction(s) without reference"
        if "html" in self.paths:
            line += f"; report: {self.paths['html']}"
        return line
