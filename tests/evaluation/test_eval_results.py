"""Typed results: records (mapping view = JSON keys, strict JSON at the edge) and the accumulators (update/compute/reset)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from eval_masks import PAIRS

from medannot.errors import InputError
from medannot.evaluation import SegmentationAccumulator, segmentation_metrics
from medannot.evaluation.accumulate import FrocAccumulator
from medannot.evaluation.classification import ClassificationAccumulator, classification_metrics
from medannot.evaluation.detection import DetectionAccumulator, average_precision, detection_froc
from medannot.evaluation.instances import froc, froc_from_hits, to_instances
from medannot.evaluation.metrics import Empty, SegmentationMetrics
from medannot.evaluation.record import dumps_json
from medannot.evaluation.results import FIRST_COLUMNS, EvaluationResult, FrocSummary, MetricRow, SegmentationSettings, TaskEvaluation


def test_metrics_record_is_typed_and_reads_as_the_old_dict():
    pred, truth, spacing = PAIRS["anisotropic_3d"]
    m = segmentation_metrics(pred, truth, spacing)
    assert isinstance(m, SegmentationMetrics) and m.dice == m["dice"] and m.empty is Empty.NONE
    assert list(m) == ["dice", "iou", "precision", "recall", "specificity", "hausdorff", "hd95", "hd95_pooled", "assd",
                       "surface_dice", "volume_difference", "truth_volume", "pred_volume", "empty"]
    assert m == dict(m) and {**m}["hd95"] == m.hd95
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.dice = 0.0  # type: ignore[misc]
    assert json.loads(m.to_json()) == {k: (v.value if isinstance(v, Empty) else v) for k, v in m.items()}


def test_row_flattens_metrics_lesions_and_manifest_columns_in_csv_order():
    pred, truth, spacing = PAIRS["border_3d"]
    row = MetricRow(case="c1", label="liver", metrics=segmentation_metrics(pred, truth, spacing), label_value=1, extra={"site": "A"})
    keys = list(row)
    assert tuple(keys[:9]) == FIRST_COLUMNS and keys[-2:] == ["label_value", "site"] and "lesion_f1" not in row
    assert row["site"] == "A" and row["dice"] == row.metrics.dice and row.empty == row["empty"]
    with pytest.raises(KeyError):
        row["metrics"]  # a field spread into the row is not a key of its own
    assert "label_value" not in MetricRow(case="c", label="x", metrics=row.metrics)  # optional keys: absent while None


def test_strict_json_at_the_edge_and_optional_sections():
    assert FrocSummary(skipped="no scores").to_dict() == {"skipped": "no scores"}
    curve = froc_from_hits([0.9], [0.5], 0, 2)  # no true lesion: sensitivity undefined
    text = dumps_json({"curve": curve, "nan": float("nan"), "inf": np.float32(np.inf), "arr": np.arange(2)})
    doc = json.loads(text)
    assert "NaN" not in text and "Infinity" not in text
    assert doc["nan"] is None and doc["inf"] is None and doc["arr"] == [0, 1]
    assert doc["curve"]["thresholds"][0] is None and doc["curve"]["score"] is None and "undefined" in doc["curve"]
    settings = SegmentationSettings(prediction="p", truth="t", labels=None, resample=False, tolerance_mm=1.0)
    assert "match" not in settings.to_dict() and settings.to_dict()["labels"] is None  # labels: always written


def test_entry_point_results_share_the_protocol(tmp_path):
    acc = SegmentationAccumulator()
    pred, truth, spacing = PAIRS["ellipse_2d"]
    acc.update("c", "x", pred, truth, spacing)
    summary = dataclasses.replace(acc.compute(), missing_predictions=["gone"], unmatched_predictions=[])
    settings = SegmentationSettings(prediction="p", truth="t", labels=None, resample=False, tolerance_mm=1.0)
    result = EvaluationResult(summary=summary, settings=settings, paths={"html": tmp_path / "report.html"},
                              missing_predictions=["gone"], unmatched_predictions=[], rows=acc.rows)
    assert isinstance(result, TaskEvaluation)
    line = result.summary_line()
    assert "\n" not in line and line.startswith("1 case: x Dice ") and "1 without prediction" in line and "report.html" in line
    assert list(result.to_dict()) == ["summary", "settings", "paths", "missing_predictions", "unmatched_predictions", "rows"]


def test_classification_accumulator_equals_one_call():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    prob = rng.dirichlet([1, 1, 1], 40)
    acc = ClassificationAccumulator([0, 1, 2], n_bins=10)
    for start in range(0, 40, 16):
        acc.update(y[start:start + 16], prob[start:start + 16])
    assert len(acc) == 40
    assert acc.compute() == classification_metrics(y, y_prob=prob, labels=[0, 1, 2], n_bins=10)
    with pytest.raises(InputError, match="shape"):
        acc.update([0], [[0.5, 0.5]])
    acc.reset()
    with pytest.raises(InputError, match="no sample"):
        acc.compute()


def test_detection_accumulator_equals_the_pure_functions():
    rng = np.random.default_rng(1)
    dets, gts = [], []
    acc = DetectionAccumulator(froc_iou=0.2)
    for i in range(3):
        lo = rng.uniform(0, 50, (5, 2))
        truth = np.hstack([lo, lo + rng.uniform(5, 15, (5, 2))])
        found = truth[: 3 + i % 2] + rng.normal(0, 1.0, (3 + i % 2, 4))
        found[:, 2:] = np.maximum(found[:, 2:], found[:, :2])
        det = (found, rng.uniform(0.1, 1.0, len(found)), np.ones(len(found), int))
        gt = (truth, np.ones(5, int))
        dets.append(det)
        gts.append(gt)
        case = acc.update(f"img{i}", det, gt)
        assert case.ap50 == average_precision([det], [gt])["ap50"] and case.n_truth == 5
    scores = acc.compute()
    assert scores.ap == average_precision(dets, gts)
    assert scores.froc == detection_froc(dets, gts, iou_threshold=0.2)
    assert scores.n_truth == 15 and scores.n_detections == sum(len(d[0]) for d in dets) and list(scores.cases) == ["img0", "img1", "img2"]
    with pytest.raises(InputError, match="twice"):
        acc.update("img0", dets[0], gts[0])


def test_froc_accumulator_equals_froc_over_cases():
    cases, acc = [], FrocAccumulator()
    for k in range(3):
        truth = np.zeros((20, 20), np.uint8)
        truth[2:6, 2 + 5 * k:6 + 5 * k] = 1
        truth[12:16, 12:16] = 1
        pred = np.zeros((20, 20), np.int32)
        pred[2:6, 2 + 5 * k:6 + 5 * k] = 1
        pred[17:19, 0:3] = 2  # a false positive
        scores = {1: 0.9 - 0.1 * k, 2: 0.3 + 0.2 * k}
        one = froc([(pred, to_instances(truth > 0), scores)])
        thresholds, fp = one.thresholds[1:], np.rint(one.fp_per_case).astype(int)
        tp = np.rint(np.asarray(one.sensitivity) * one.n_truth).astype(int)
        acc.update({"lesion": ([t for t, n in zip(thresholds, np.diff(tp), strict=True) for _ in range(n)],
                               [t for t, n in zip(thresholds, np.diff(fp), strict=True) for _ in range(n)], one.n_truth)})
        cases.append((pred, to_instances(truth > 0), scores))
    curve = acc.compute()["lesion"]
    expected = froc(cases)
    assert len(acc) == 3 and curve.score == pytest.approx(expected.score) and math.isfinite(curve.score)
    assert curve.sensitivity == pytest.approx(expected.sensitivity) and curve.fp_per_case == pytest.approx(expected.fp_per_case)
    acc.reset()
    assert acc.compute() == {}
