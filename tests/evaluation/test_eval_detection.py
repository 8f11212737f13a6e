"""Box detection metrics against torchvision, MONAI and pycocotools."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import pytest
import torch
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou as monai_box_iou
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou as tv_box_iou

from medannot.errors import InputError
from medannot.evaluation.detection import average_precision, box_iou, detection_froc, recall_at_k


def _random_boxes(rng: np.random.Generator, n: int, ndim: int, lo: float = 0, hi: float = 80) -> np.ndarray:
    mins = rng.uniform(lo, hi, (n, ndim))
    return np.concatenate([mins, mins + rng.uniform(3, 25, (n, ndim))], axis=1)


def _dataset(seed: int, ndim: int = 2, n_img: int = 30, n_cls: int = 3, jitter: float = 1.5):
    """Truth boxes, jittered detections (some with a wrong class), duplicates and spurious boxes; tied scores."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(n_img):
        g = int(rng.integers(0, 7))
        gb, gc = _random_boxes(rng, g, ndim), rng.integers(0, n_cls, g)
        db, dc = [], []
        for b, c in zip(gb, gc):
            for _ in range(int(rng.integers(0, 3))):
                db.append(b + rng.normal(0, jitter, 2 * ndim))
                dc.append(c if rng.uniform() < 0.9 else rng.integers(0, n_cls))
        k = int(rng.integers(0, 4))
        db.extend(_random_boxes(rng, k, ndim))
        dc.extend(rng.integers(0, n_cls, k))
        db = np.asarray(db, dtype=np.float64).reshape(-1, 2 * ndim)
        db[:, ndim:] = np.maximum(db[:, ndim:], db[:, :ndim] + 0.5)
        n_true = len(db) - k
        scores = np.round(np.concatenate([rng.uniform(0.3, 1, n_true), rng.uniform(0, 0.7, k)]), 2)
        dets.append((db, scores, np.asarray(dc, dtype=np.int64)))
        gts.append((gb, gc))
    return dets, gts


def _cocoeval(dets, gts, n_cls: int) -> COCOeval:
    images = [{"id": i + 1} for i in range(len(gts))]
    anns, k = [], 1
    for i, (gb, gc) in enumerate(gts):
        for b, c in zip(gb, gc):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": k, "image_id": i + 1, "category_id": int(c) + 1, "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
            k += 1
    results = [
        {"image_id": i + 1, "category_id": int(c) + 1, "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)}
        for i, (db, ds, dc) in enumerate(dets)
        for b, s, c in zip(db, ds, dc)
    ]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(n_cls)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")  # area range "all" is index 0; maxDets (1, 10, 100)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_box_iou_equals_torchvision_2d_and_monai_3d() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 17, 2, hi=30), _random_boxes(rng, 11, 2, hi=30)
    np.testing.assert_allclose(box_iou(a, b), tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), rtol=1e-12, atol=1e-15)
    a3, b3 = _random_boxes(rng, 13, 3, hi=30), _random_boxes(rng, 9, 3, hi=30)
    # MONAI computes in float32 (COMPUTE_DTYPE) with an eps in the denominator: equal to ~1e-7
    np.testing.assert_allclose(box_iou(a3, b3), monai_box_iou(a3, b3), rtol=0, atol=1e-6)
    # exclusive max corner: voxels 0..1 and 1..2 share one voxel column of width 1 -> 1/3
    assert box_iou([[0, 0, 2, 1]], [[1, 0, 3, 1]])[0, 0] == pytest.approx(1 / 3)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 11)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # zero union: 0, not NaN


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_pycocotools(seed: int) -> None:
    dets, gts = _dataset(seed)
    ev = _cocoeval(dets, gts, 3)
    ours = average_precision(dets, gts)
    assert ours["ap"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["ap50"] == pytest.approx(ev.stats[1], abs=1e-6)
    assert ours["ap75"] == pytest.approx(ev.stats[2], abs=1e-6)
    for j, k in enumerate((1, 10, 100)):  # AR@1, AR@10, AR@100
        assert ours["recall_at_k"][k] == pytest.approx(ev.stats[6 + j], abs=1e-6)
    assert 0.1 < ours["ap"] < ours["ap50"] < 0.95  # a non-trivial set
    prec = ev.eval["precision"][:, :, :, 0, 2]  # [T, R, K, area all, maxDets 100]
    for c in range(3):
        p = prec[:, :, c]
        assert ours["per_class"][c]["ap"] == pytest.approx(p[p > -1].mean(), abs=1e-6)
    # fewer detections per image: pycocotools' maxDets=10 column
    small = average_precision(dets, gts, max_detections=10)
    p10 = ev.eval["precision"][:, :, :, 0, 1]
    assert small["ap"] == pytest.approx(p10[p10 > -1].mean(), abs=1e-6)
    assert recall_at_k(dets, gts, k=10, iou_thresholds=np.linspace(0.5, 0.95, 10)) == pytest.approx(ev.stats[7], abs=1e-6)


def test_average_precision_3d_equals_monai() -> None:
    """MONAI's COCOMetric follows pycocotools too. Differences by definition, avoided here: it
    averages the -1 of classes without truth into mAP (we leave them out; every class has truth
    here) and it stores cumulative counts as float32, which can move a recall onto the other side
    of a recall point; with these data the two agree to 1e-6."""
    dets, gts = _dataset(5, ndim=3, n_img=20, jitter=1.0)
    metric = COCOMetric(classes=["a", "b", "c"], iou_list=(0.5, 0.75), iou_range=(0.5, 0.95, 0.05), max_detection=(100,), verbose=False)
    matched = matching_batch(
        iou_fn=monai_box_iou,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=[d[0] for d in dets],
        pred_classes=[d[2] for d in dets],
        pred_scores=[d[1] for d in dets],
        gt_boxes=[g[0] for g in gts],
        gt_classes=[g[1] for g in gts],
        max_detections=100,
    )
    logging.disable(logging.WARNING)
    try:
        ref, _ = metric(matched)
    finally:
        logging.disable(logging.NOTSET)
    ours = average_precision(dets, gts)
    assert ours["ap"] == pytest.approx(ref["mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)
    assert ours["ap50"] == pytest.approx(ref["AP_IoU_0.50_MaxDet_100"], abs=1e-6)
    assert ours["ap75"] == pytest.approx(ref["AP_IoU_0.75_MaxDet_100"], abs=1e-6)
    assert ours["recall_at_k"][100] == pytest.approx(ref["mAR_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)
    for c, name in enumerate("abc"):
        assert ours["per_class"][c]["ap"] == pytest.approx(ref[f"{name}_mAP_IoU_0.50_0.95_0.05_MaxDet_100"], abs=1e-6)


def test_average_precision_hand_and_empty_rules() -> None:
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    # perfect detections: AP 1; one duplicate with a lower score does not lower it
    det = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]]), np.array([0.9, 0.8, 0.1]), np.array([0, 0, 0]))]
    r = average_precision(det, gt)
    assert r["ap"] == pytest.approx(1.0) and r["ap50"] == pytest.approx(1.0)
    # no detections: AP 0; a class with no truth (class 1 detected only): undefined, left out
    r = average_precision([(np.zeros((1, 4)) + [0, 0, 5, 5], np.array([0.5]), np.array([1]))], gt)
    assert r["per_class"][0]["ap"] == 0.0 and r["per_class"][1]["ap"] is None and r["undefined_classes"] == [1]
    assert r["ap"] == 0.0
    r = average_precision([(np.zeros((0, 4)), [], [])], [(np.zeros((0, 4)), [])])
    assert r["ap"] is None and r["per_class"] == {}
    with pytest.raises(InputError, match="corner form"):
        average_precision([(np.array([[5, 5, 1, 1]]), [0.5], [0])], gt)
    with pytest.raises(InputError, match="same images"):
        average_precision([], gt)


def test_detection_froc() -> None:
    gts = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0, 0])), (np.array([[0, 0, 10, 10]]), np.array([0]))]
    dets = [
        (np.array([[1, 1, 10, 10], [2, 2, 9, 9], [30, 30, 35, 35]]), np.array([0.9, 0.95, 0.5]), np.array([0, 0, 0])),
        (np.array([[70, 70, 80, 80], [0, 0, 10, 10]]), np.array([0.8, 0.4]), np.array([0, 1])),
    ]
    r = detection_froc(dets, gts, fp_rates=(0.5, 1.0, 2.0))
    # lesion hits: 0.95 (best of two hits on box 1 of image 0); class 1 on image 1 is a FP when class-aware
    assert r["thresholds"] == [float("inf"), 0.95, 0.8, 0.5, 0.4]
    assert r["sensitivity"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert r["fp_per_case"] == [0, 0, 0.5, 1.0, 1.5]
    r = detection_froc(dets, gts, fp_rates=(0.5, 1.0, 2.0), class_aware=False)
    assert r["sensitivity"][-1] == pytest.approx(2 / 3) and r["fp_per_case"][-1] == 1.0
    assert r["sensitivity_at"] == {0.5: pytest.approx(1 / 3), 1.0: pytest.approx(2 / 3), 2.0: pytest.approx(2 / 3)}


def test_matching_edge_rules_equal_pycocotools() -> None:
    """IoU exactly at a threshold matches (>=); of two equally good truth boxes the later one is taken."""
    gts = [
        (np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=float), np.array([0, 0])),
        (np.array([[0, 0, 10, 10]], dtype=float), np.array([0])),
    ]
    dets = [
        (np.array([[0, 0, 12, 10], [2, 0, 12, 10]], dtype=float), np.array([0.9, 0.8]), np.array([0, 0])),
        (np.array([[0, 0, 10, 5]], dtype=float), np.array([0.7]), np.array([0])),  # IoU exactly 0.5
    ]
    ev = _cocoeval(dets, gts, 1)
    ours = average_precision(dets, gts)
    assert (ours["ap"], ours["ap50"], ours["ap75"]) == pytest.approx(tuple(ev.stats[:3]), abs=1e-12)
    assert ours["recall_at_k"][100] == pytest.approx(ev.stats[8], abs=1e-12)
    assert ours["ap50"] == pytest.approx(1.0)  # all three truths found at IoU >= 0.5
