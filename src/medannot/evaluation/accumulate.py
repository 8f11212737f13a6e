"""Accumulate per-case segmentation results and summarise them (update / compute / reset, as MONAI's metrics).

- :class:`SegmentationAccumulator`: one :class:`~medannot.evaluation.results.MetricRow` per case and label;
  ``compute()`` gives the :class:`~medannot.evaluation.results.SegmentationSummary` (:func:`summarise`).
- :class:`FrocAccumulator`: lesion hits per case and label; ``compute()`` gives a FROC curve per label.
- :func:`lesion_summary`: lesion totals per label over the rows.

The accumulators of the other tasks live beside their pure functions:
:class:`medannot.evaluation.classification.ClassificationAccumulator` and
:class:`medannot.evaluation.detection.DetectionAccumulator`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medannot.evaluation.metrics import Empty, segmentation_metrics
from medannot.evaluation.results import (
    FIRST_COLUMNS,
    SUMMARY_METRICS,
    EmptyCase,
    EmptyCounts,
    LesionSummary,
    MetricRow,
    SegmentationSummary,
    Stats,
)

if TYPE_CHECKING:  # instances imports scipy.optimize: loaded when a FROC is computed, not with the package
    from medannot.evaluation.instances import FrocCurve

__all__ = [
    "FIRST_COLUMNS",
    "SUMMARY_METRICS",
    "FrocAccumulator",
    "SegmentationAccumulator",
    "lesion_summary",
    "summarise",
]


def _stats(values: list[float]) -> Stats:
    arr = np.asarray(values, dtype=np.float64)
    return Stats(
        n=int(arr.size),
        mean=float(arr.mean()),
        # Sample standard deviation; undefined (None) for a single case.
        std=float(arr.std(ddof=1)) if arr.size > 1 else None,
        median=float(np.median(arr)),
        min=float(arr.min()),
        max=float(arr.max()),
    )


def summarise(rows: Sequence[MetricRow], include_absent: bool = False) -> SegmentationSummary:
    """Summary of metric rows: per label and metric mean, sample std, median, min, max, n.

    A missed structure or a false alarm (one mask empty) is *included* in every statistic with its documented
    finite values (Dice 0, the image diagonal as distance; see :mod:`medannot.evaluation.metrics`). A label absent
    from *both* masks of a case says nothing about the method: as nnU-Net does, that row is left out of the
    statistics (it stays in the rows and is flagged ``empty="both"``), unless ``include_absent`` counts it with
    Dice 1 and distance 0. Every row with an empty mask is listed under ``empty_cases`` and counted per kind.
    Non-finite values (none by the empty rule) would be left out of the statistics.

    Args:
        rows: One row per case and label.
        include_absent: Count labels absent from both masks in the statistics (as perfect agreement).

    Returns:
        :class:`~medannot.evaluation.results.SegmentationSummary` with ``labels`` ({label: {metric:
        Stats}}), ``n_cases``, ``n_rows``, ``empty_counts`` and ``empty_cases``. ``std`` is None when a
        label has a single scored case; a label absent from both masks in every case has no statistics (``{}``).
        Empty input gives empty sections and zero counts.
    """
    labels: dict[str, dict[str, list[float]]] = {}
    empty_cases: list[EmptyCase] = []
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        label = str(row.label)
        per_metric = labels.setdefault(label, {})
        label_counts = counts.setdefault(label, {"truth": 0, "prediction": 0, "both": 0})
        kind = Empty(row.empty)
        if kind is Empty.BOTH and not include_absent:
            per_metric.setdefault("dice", [])  # the label stays listed; its statistics come from the scored cases only
        for metric in SUMMARY_METRICS if kind is not Empty.BOTH or include_absent else ():
            value = row.metrics[metric]
            if isinstance(value, (int, float)) and math.isfinite(value):
                per_metric.setdefault(metric, []).append(float(value))
        if kind is not Empty.NONE:
            label_counts[kind.value] += 1
            empty_cases.append(EmptyCase(case=str(row.case), label=label, empty=kind))
    return SegmentationSummary(
        labels={label: {m: _stats(v) for m, v in per_metric.items() if v} for label, per_metric in labels.items()},
        n_cases=len({str(r.case) for r in rows}),
        n_rows=len(rows),
        empty_counts={label: EmptyCounts(**c) for label, c in counts.items()},
        empty_cases=empty_cases,
    )


def lesion_summary(rows: Sequence[MetricRow], include_absent: bool = False) -> dict[str, LesionSummary]:
    """Per label lesion totals over cases: counts, pooled sensitivity/precision/F1, FP per case, mean lesion F1 and PQ.

    Pooled ratios are None when their denominator is 0 (no lesion anywhere); rows without lesion columns
    are ignored and a label without any is left out. As in :func:`summarise`, cases where the label is absent
    from both masks are left out of the mean lesion F1 and PQ unless ``include_absent`` (they add no count);
    those means are None when no case is left. Empty input gives ``{}``.
    """
    out: dict[str, LesionSummary] = {}
    for label in dict.fromkeys(str(r.label) for r in rows):
        sel = [r.lesions for r in rows if str(r.label) == label and r.lesions is not None]
        if not sel:
            continue
        scored = [c for r, c in ((r, r.lesions) for r in rows if str(r.label) == label and r.lesions is not None)
                  if include_absent or Empty(r.empty) is not Empty.BOTH]
        tp = sum(int(c.lesion_tp) for c in sel)
        fp = sum(int(c.false_positives) for c in sel)
        fn = sum(int(c.lesion_fn) for c in sel)
        out[label] = LesionSummary(
            n_cases=len(sel),
            n_truth=sum(int(c.n_truth_lesions) for c in sel),
            n_pred=sum(int(c.n_pred_lesions) for c in sel),
            tp=tp,
            fp=fp,
            fn=fn,
            sensitivity=tp / (tp + fn) if tp + fn else None,
            precision=tp / (tp + fp) if tp + fp else None,
            f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            fp_per_case=fp / len(sel),
            mean_lesion_f1=sum(float(c.lesion_f1) for c in scored) / len(scored) if scored else None,
            mean_pq=sum(float(c.pq) for c in scored) / len(scored) if scored else None,
        )
    return out


class SegmentationAccumulator:
    """Collects one metric row per (case, label) and summarises them.

    Args:
        tolerance_mm: Surface Dice tolerance in mm used by :meth:`update`.
        include_absent: Count labels absent from both masks in the statistics (see :func:`summarise`).

    Example:
        >>> acc = SegmentationAccumulator()
        >>> acc.update("case1", "liver", pred == 1, truth == 1, spacing=(2.0, 0.8, 0.8))  # doctest: +SKIP
        >>> acc.compute().labels["liver"]["dice"].mean  # doctest: +SKIP
    """

    def __init__(self, tolerance_mm: float = 1.0, include_absent: bool = False) -> None:
        self.tolerance_mm = float(tolerance_mm)
        self.include_absent = bool(include_absent)
        self.rows: list[MetricRow] = []

    def update(self, case: str, label_name: str, pred_mask: Any, truth_mask: Any, spacing: Sequence[float]) -> MetricRow:
        """Compute :func:`~medannot.evaluation.metrics.segmentation_metrics` for one case and label and store the row.

        Returns:
            The row (its mapping view: ``case``, ``label``, then the metrics, see ``FIRST_COLUMNS``).
        """
        metrics = segmentation_metrics(pred_mask, truth_mask, spacing, tolerance_mm=self.tolerance_mm)
        return self.add_row(MetricRow(case=str(case), label=str(label_name), metrics=metrics))

    def add_row(self, row: MetricRow) -> MetricRow:
        """Store an already computed row (e.g. from a worker process)."""
        self.rows.append(row)
        return row

    def compute(self) -> SegmentationSummary:
        """Summary of all rows so far (see :func:`summarise`)."""
        return summarise(self.rows, self.include_absent)

    def reset(self) -> None:
        """Forget all rows."""
        self.rows = []

    def __len__(self) -> int:
        return len(self.rows)


class FrocAccumulator:
    """Collects lesion hits case by case and gives one FROC curve per label (LUNA16 score).

    Per case and label, :meth:`update` takes the best hit score of each detected true lesion, the scores
    of false-positive predictions and the number of true lesions (see
    :func:`medannot.evaluation.instances.froc_from_hits`).

    Args:
        fp_rates: False positives per case at which sensitivity is read (default: LUNA16's 1/8 .. 8,
            :data:`medannot.evaluation.instances.LUNA16_FP_RATES`).
    """

    def __init__(self, fp_rates: Sequence[float] | None = None) -> None:
        from medannot.evaluation.instances import LUNA16_FP_RATES

        self.fp_rates = tuple(float(r) for r in (LUNA16_FP_RATES if fp_rates is None else fp_rates))
        self.reset()

    def update(self, hits: Mapping[str, tuple[Sequence[float], Sequence[float], int]]) -> None:
        """Add one case: label -> ``(tp_scores, fp_scores, n_truth)``; a label missing from it had nothing."""
        self.n_cases += 1
        for label, (tp, fp, n) in hits.items():
            t, f, count = self._hits.setdefault(label, ([], [], 0))
            self._hits[label] = (t + [float(v) for v in tp], f + [float(v) for v in fp], count + int(n))

    def compute(self) -> dict[str, FrocCurve]:
        """FROC curve per label over the cases so far; labels with no true lesion and no false positive are left out.

        Empty rule: no case or no label gives ``{}``.
        """
        from medannot.evaluation.instances import froc_from_hits

        curves: dict[str, FrocCurve] = {}
        if self.n_cases == 0:
            return curves
        for label, (tp, fp, n_truth) in self._hits.items():
            if n_truth == 0 and not fp:
                continue
            curves[label] = froc_from_hits(tp, fp, n_truth, self.n_cases, self.fp_rates)
        return curves

    def reset(self) -> None:
        """Forget all cases."""
        self.n_cases = 0
        self._hits: dict[str, tuple[list[float], list[float], int]] = {}

    def __len__(self) -> int:
        return self.n_cases
