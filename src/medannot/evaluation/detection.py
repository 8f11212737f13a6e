"""Detection metrics for 2D and 3D boxes: IoU, COCO-style average precision, recall at k, FROC.

Boxes
    NumPy arrays of shape (N, 2 * ndim) in corner form ``[x1, y1, x2, y2]`` (2D) or
    ``[x1, y1, z1, x2, y2, z2]`` (3D), in any consistent unit (voxels or mm). Coordinates are
    continuous and the max corner is **exclusive**: a box covering voxels ``i..j`` along an axis
    has ``x1 = i, x2 = j + 1``; its extent is ``x2 - x1`` and its area/volume the product of
    extents. This is the COCO (``[x, y, w, h]`` with ``x2 = x + w``), torchvision and MONAI
    (``TO_REMOVE = 0``) convention. ``x2 < x1`` is an error; zero-extent boxes are allowed.

Per image
    ``detections[i] = (boxes, scores, classes)`` and ``ground_truth[i] = (boxes, classes)``,
    classes as integers. An image may have no detections or no truth (empty arrays).

COCO evaluation (as pycocotools ``COCOeval`` with ``iouType="bbox"``, area range "all", no crowd)
    Per image and class, detections are sorted by descending score (stable) and cut to
    ``max_detections``; per IoU threshold ``t`` each detection in turn is matched greedily to
    the still unmatched truth box of the same class with the largest IoU >= t (ties: the later
    truth box, as pycocotools). Per class, detections of all images are ranked by score (stable,
    images in list order); precision is made monotone (running max from the right) and read at
    the 101 recall points 0, 0.01, ..., 1 (first rank whose recall reaches the point; 0 beyond the
    last recall reached). AP is the mean of these 101 values; ``ap`` averages over the IoU
    thresholds and the classes that have truth boxes. Recall at k is COCO's AR@k: the recall
    reached with at most ``k`` detections per image *and class*, averaged the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from medannot.errors import ConfigError, InputError
from medannot.evaluation.instances import LUNA16_FP_RATES, FrocCurve, froc_from_hits
from medannot.evaluation.record import Record

__all__ = [
    "COCO_IOU_THRESHOLDS",
    "AveragePrecision",
    "CaseAP",
    "ClassAP",
    "DetectionAccumulator",
    "DetectionScores",
    "average_precision",
    "box_iou",
    "detection_froc",
    "recall_at_k",
]


class ClassAP(TypedDict):
    """Per-class entry of :func:`average_precision` (None where the class has no truth box)."""

    ap: float | None
    ap50: float | None
    ap75: float | None
    recall: float | None
    n_truth: int
    n_detections: int


class AveragePrecision(TypedDict):
    """Result of :func:`average_precision`: a plain dict (it is stored as is in bundle metrics)."""

    ap: float | None
    ap50: float | None
    ap75: float | None
    per_class: dict[int, ClassAP]
    recall_at_k: dict[int, float | None]
    undefined_classes: list[int]
    iou_thresholds: list[float]
    n_images: int


class _CocoTables(TypedDict):
    precision: np.ndarray
    recall: np.ndarray
    classes: np.ndarray
    n_truth: np.ndarray
    n_detections: np.ndarray

#: COCO IoU thresholds 0.50:0.05:0.95 (computed as pycocotools does, so 0.5 and 0.75 are exact).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: COCO recall points 0:0.01:1.
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)


def _boxes(boxes: Any, name: str, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2 * ndim if ndim else 4)
    if arr.ndim != 2 or arr.shape[1] not in (4, 6) or (ndim is not None and arr.shape[1] != 2 * ndim):
        want = f"(N, {2 * ndim})" if ndim else "(N, 4) or (N, 6)"
        raise InputError(f"{name}: expected boxes of shape {want} in corner form [mins..., maxs...], got shape {arr.shape}")
    d = arr.shape[1] // 2
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: box coordinates must be finite, got NaN or inf")
    if np.any(arr[:, d:] < arr[:, :d]):
        raise InputError(f"{name}: every max corner must be >= its min corner ([x1, y1, x2, y2] corner form, not [x, y, w, h])")
    return arr


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Pairwise IoU of two sets of boxes (2D or 3D, corner form, exclusive max corner).

    ``IoU = |A & B| / |A | B|`` with areas (2D) or volumes (3D) as products of extents.
    A pair whose union is 0 (two zero-extent boxes) has IoU 0.

    Args:
        a: (N, 2 * ndim) boxes.
        b: (M, 2 * ndim) boxes, same ndim.

    Returns:
        (N, M) float64 array; empty inputs give an empty array of that shape.
    """
    aa = _boxes(a, "box_iou a")
    bb = _boxes(b, "box_iou b", aa.shape[1] // 2)
    d = aa.shape[1] // 2
    lo = np.maximum(aa[:, None, :d], bb[None, :, :d])
    hi = np.minimum(aa[:, None, d:], bb[None, :, d:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    va = np.prod(aa[:, d:] - aa[:, :d], axis=1)
    vb = np.prod(bb[:, d:] - bb[:, :d], axis=1)
    union = va[:, None] + vb[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _dataset(detections: Sequence[Any], ground_truth: Sequence[Any]) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]], int]:
    if len(detections) != len(ground_truth):
        raise InputError(f"detections and ground_truth must list the same images, got {len(detections)} and {len(ground_truth)}")
    ndim: int | None = None
    dets, gts = [], []
    for i, (det, gt) in enumerate(zip(detections, ground_truth, strict=True)):
        try:
            db, ds, dc = det
            gb, gc = gt
        except (TypeError, ValueError):
            raise InputError(f"image {i}: expected detections (boxes, scores, classes) and ground truth (boxes, classes)") from None
        db = _boxes(db, f"image {i} detections", ndim)
        ndim = ndim or (db.shape[1] // 2 if len(db) else None)
        gb = _boxes(gb, f"image {i} ground truth", ndim)
        ndim = ndim or (gb.shape[1] // 2 if len(gb) else None)
        ds = np.asarray(ds, dtype=np.float64).reshape(-1)
        dc = np.asarray(dc).reshape(-1).astype(np.int64)
        gc = np.asarray(gc).reshape(-1).astype(np.int64)
        if ds.size != len(db) or dc.size != len(db) or gc.size != len(gb):
            raise InputError(f"image {i}: need one score and one class per detection and one class per truth box, got {len(db)} boxes, {ds.size} scores, {dc.size} classes; {len(gb)} truth boxes, {gc.size} classes")
        dets.append((db, ds, dc))
        gts.append((gb, gc))
    return dets, gts, ndim or 2


def _match_image(db: np.ndarray, gb: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy COCO matching of score-sorted detections; (T, D) bool "is a true positive"."""
    tps = np.zeros((thresholds.size, len(db)), dtype=bool)
    if len(db) == 0 or len(gb) == 0:
        return tps
    ious = box_iou(db, gb)
    taken = np.zeros((thresholds.size, len(gb)), dtype=bool)
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    rev = slice(None, None, -1)
    for k in range(len(db)):
        cand = np.where(~taken & (ious[k][None, :] >= thr), ious[k][None, :], -1.0)
        best = cand.max(axis=1)
        ok = best >= 0
        idx = len(gb) - 1 - np.argmax(cand[:, rev] == best[:, None], axis=1)  # the last of equal bests
        tps[ok, k] = True
        taken[np.flatnonzero(ok), idx[ok]] = True
    return tps


def _coco(detections: Sequence[Any], ground_truth: Sequence[Any], thresholds: np.ndarray, max_dets: Sequence[int]) -> _CocoTables:
    """precision (T, R, K, M), recall (T, K, M) with -1 for classes without truth, as pycocotools."""
    dets, gts, _ = _dataset(detections, ground_truth)
    classes = np.unique(np.concatenate([c for _, _, c in dets] + [c for _, c in gts] + [np.zeros(0, np.int64)]))
    top = max(max_dets)
    n_t, n_r, n_k, n_m = thresholds.size, RECALL_POINTS.size, classes.size, len(max_dets)
    precision = -np.ones((n_t, n_r, n_k, n_m))
    recall = -np.ones((n_t, n_k, n_m))
    n_truth = np.zeros(n_k, dtype=np.int64)
    n_det = np.zeros(n_k, dtype=np.int64)
    for ki, c in enumerate(classes):
        per_image = []
        for (db, ds, dc), (gb, gc) in zip(dets, gts, strict=True):
            sel = np.flatnonzero(dc == c)
            sel = sel[np.argsort(-ds[sel], kind="mergesort")][:top]
            g = gb[gc == c]
            n_truth[ki] += len(g)
            per_image.append((ds[sel], _match_image(db[sel], g, thresholds)))
        n_det[ki] = sum(len(s) for s, _ in per_image)
        if n_truth[ki] == 0:
            continue
        for mi, m in enumerate(max_dets):
            scores = np.concatenate([s[:m] for s, _ in per_image])
            order = np.argsort(-scores, kind="mergesort")
            tps = np.concatenate([t[:, :m] for _, t in per_image], axis=1)[:, order]
            tp = np.cumsum(tps, axis=1).astype(np.float64)
            fp = np.cumsum(~tps, axis=1).astype(np.float64)
            rc = tp / n_truth[ki]
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            recall[:, ki, mi] = rc[:, -1] if rc.shape[1] else 0.0
            for ti in range(n_t):
                q = np.zeros(n_r)
                idx = np.searchsorted(rc[ti], RECALL_POINTS, side="left")
                ok = idx < rc.shape[1]
                q[ok] = pr[ti, idx[ok]]
                precision[ti, :, ki, mi] = q
    return {"precision": precision, "recall": recall, "classes": classes, "n_truth": n_truth, "n_detections": n_det}


def _mean_valid(x: np.ndarray) -> float | None:
    v = x[x > -1]
    return float(v.mean()) if v.size else None


def _thresholds(iou_thresholds: Any) -> np.ndarray:
    t = np.atleast_1d(np.asarray(iou_thresholds, dtype=np.float64))
    if t.size == 0 or np.any((t <= 0) | (t > 1)):
        raise ConfigError(f"iou_thresholds must be non-empty values in (0, 1], got {t.tolist()}")
    return t


def _index_of(thresholds: np.ndarray, value: float) -> int | None:
    hit = np.flatnonzero(np.isclose(thresholds, value, rtol=0, atol=1e-9))
    return int(hit[0]) if hit.size else None


def average_precision(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    iou_thresholds: Any = COCO_IOU_THRESHOLDS,
    max_detections: int = 100,
    recall_ks: Sequence[int] = (1, 10, 100),
) -> AveragePrecision:
    """COCO-style average precision of boxes over a dataset (see the module docstring).

    Args:
        detections: Per image ``(boxes (N, 2*ndim), scores (N,), classes (N,))``.
        ground_truth: Per image ``(boxes (G, 2*ndim), classes (G,))``.
        iou_thresholds: IoU thresholds (a detection matches at IoU >= t); default COCO 0.50:0.05:0.95.
        max_detections: Detections kept per image and class (highest scores) for AP.
        recall_ks: The k of ``recall_at_k`` (COCO AR@k, averaged over thresholds and classes).

    Returns:
        ``ap`` (mean over thresholds and classes), ``ap50`` and ``ap75`` (None if 0.5 / 0.75 is not
        among the thresholds), ``per_class`` ({class: {ap, ap50, ap75, recall, n_truth,
        n_detections}}), ``recall_at_k`` ({k: value}), ``iou_thresholds``, ``n_images``.

    Empty rule: a class with no truth box has undefined AP and recall (None in ``per_class``; it
    is left out of the averages and listed under ``undefined_classes``); with no truth box at all
    every average is None. A class with truth but no detection has AP 0.0.
    """
    thresholds = _thresholds(iou_thresholds)
    if int(max_detections) < 1 or any(int(k) < 1 for k in recall_ks):
        raise ConfigError(f"max_detections and recall_ks must be >= 1, got {max_detections} and {tuple(recall_ks)}")
    ks = [int(k) for k in recall_ks]
    res = _coco(detections, ground_truth, thresholds, [int(max_detections), *ks])
    prec, rec = res["precision"][..., 0], res["recall"]
    i50, i75 = _index_of(thresholds, 0.5), _index_of(thresholds, 0.75)

    def at(p: np.ndarray, i: int | None) -> float | None:
        return None if i is None else _mean_valid(p[i])

    per_class: dict[int, ClassAP] = {}
    for ki, c in enumerate(res["classes"].tolist()):
        p = prec[:, :, ki]
        per_class[c] = ClassAP(
            ap=_mean_valid(p),
            ap50=at(p, i50),
            ap75=at(p, i75),
            recall=_mean_valid(rec[:, ki, 0]),
            n_truth=int(res["n_truth"][ki]),
            n_detections=int(res["n_detections"][ki]),
        )
    return {
        "ap": _mean_valid(prec),
        "ap50": at(prec, i50),
        "ap75": at(prec, i75),
        "per_class": per_class,
        "recall_at_k": {k: _mean_valid(rec[:, :, 1 + j]) for j, k in enumerate(ks)},
        "undefined_classes": [c for c, v in per_class.items() if v["ap"] is None],
        "iou_thresholds": thresholds.tolist(),
        "n_images": len(detections),
    }


def recall_at_k(detections: Sequence[Any], ground_truth: Sequence[Any], k: int = 100, iou_thresholds: Any = (0.5,)) -> float | None:
    """Recall with at most ``k`` detections per image and class (COCO AR@k).

    The fraction of truth boxes matched (greedy COCO matching, same class, IoU >= t) by the
    ``k`` highest-scoring detections of each image and class, averaged over ``iou_thresholds``
    and over the classes that have truth boxes. Use ``COCO_IOU_THRESHOLDS`` for COCO's AR@k.

    Returns:
        The recall in [0, 1], or None when there is no truth box (undefined).
    """
    if int(k) < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    res = _coco(detections, ground_truth, _thresholds(iou_thresholds), [int(k)])
    return _mean_valid(res["recall"][..., 0])


def detection_froc(
    detections: Sequence[Any],
    ground_truth: Sequence[Any],
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    iou_threshold: float = 0.1,
    class_aware: bool = True,
) -> FrocCurve:
    """FROC of boxes over images (LUNA16-style score = mean sensitivity at ``fp_rates``).

    Hit rule (LUNA16/CAMELYON16): a detection hits a truth box when IoU >= ``iou_threshold``
    (and, with ``class_aware``, the classes agree). A truth box is detected at score threshold
    ``s`` when any detection hitting it has score >= s; a detection hitting no truth box is a
    false positive; extra hits on a truth box are ignored. The default IoU 0.1 is the one used for
    LUNA16 in nnDetection and MONAI's detection tutorial. Curve, interpolation and empty rule:
    :func:`medannot.evaluation.instances.froc_from_hits` (images play the role of cases).

    Returns:
        :class:`~medannot.evaluation.instances.FrocCurve`: ``thresholds``, ``sensitivity``,
        ``fp_per_case`` (FP per image), ``sensitivity_at``, ``score``, ``n_truth``, ``n_cases``.
    """
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    dets, gts, _ = _dataset(detections, ground_truth)
    if not dets:
        raise InputError("detection_froc: expected at least one image, got none")
    tp_scores: list[float] = []
    fp_scores: list[float] = []
    n_truth = 0
    for (db, ds, dc), (gb, gc) in zip(dets, gts, strict=True):
        n_truth += len(gb)
        hit = box_iou(db, gb) >= float(iou_threshold)
        if class_aware:
            hit &= dc[:, None] == gc[None, :]
        fp_scores.extend(ds[~hit.any(axis=1)].tolist())
        best = np.where(hit, ds[:, None], -np.inf).max(axis=0, initial=-np.inf)
        tp_scores.extend(best[np.isfinite(best)].tolist())
    return froc_from_hits(tp_scores, fp_scores, n_truth, len(dets), fp_rates)


# --------------------------------------------------------------------------- accumulator


@dataclass(frozen=True, eq=False, repr=False)
class CaseAP(Record):
    """Box counts and AP@0.5 of one image (None when it has no true box)."""

    n_truth: int
    n_detections: int
    ap50: float | None


@dataclass(frozen=True, eq=False, repr=False)
class DetectionScores(Record):
    """What :meth:`DetectionAccumulator.compute` gives: COCO AP over all images, the FROC, per image AP@0.5 and counts."""

    ap: AveragePrecision
    froc: FrocCurve
    cases: dict[str, CaseAP]
    n_truth: int
    n_detections: int


class DetectionAccumulator:
    """Collects detections and truth boxes image by image; :meth:`compute` scores them together (update / compute / reset).

    Args:
        iou_thresholds: AP thresholds (default COCO 0.50:0.05:0.95).
        max_detections: Boxes per image and class counted for AP.
        froc_iou: Hit IoU of the FROC (LUNA16 / nnDetection: 0.1).
        fp_rates: False positives per image at which the FROC reads sensitivity.

    Example:
        >>> acc = DetectionAccumulator()
        >>> acc.update("img1", (boxes, scores, classes), (truth_boxes, truth_classes))  # doctest: +SKIP
        >>> acc.compute().ap["ap50"]  # doctest: +SKIP
    """

    def __init__(self, iou_thresholds: Any = COCO_IOU_THRESHOLDS, max_detections: int = 100, froc_iou: float = 0.1,
                 fp_rates: Sequence[float] = LUNA16_FP_RATES) -> None:
        self.iou_thresholds = _thresholds(iou_thresholds)
        self.max_detections = int(max_detections)
        self.froc_iou = float(froc_iou)
        self.fp_rates = tuple(float(r) for r in fp_rates)
        self.reset()

    def update(self, case: str, detections: tuple[Any, Any, Any], truth: tuple[Any, Any]) -> CaseAP:
        """Add one image: ``(boxes, scores, classes)`` detected and ``(boxes, classes)`` true (see the module docstring).

        Returns:
            The image's counts and AP@0.5.

        Raises:
            InputError: Malformed boxes, or ``case`` added twice.
        """
        if case in self._cases:
            raise InputError(f"detection accumulator: case {case!r} was added twice; give each image once")
        dets, gts, _ = _dataset([detections], [truth])
        one = average_precision(dets, gts, self.iou_thresholds, self.max_detections)
        row = CaseAP(n_truth=len(gts[0][0]), n_detections=len(dets[0][0]), ap50=one["ap50"])
        self._dets.append(dets[0])
        self._gts.append(gts[0])
        self._cases[str(case)] = row
        return row

    def compute(self) -> DetectionScores:
        """AP and FROC over every image so far.

        Raises:
            InputError: No image was added (FROC needs at least one).
        """
        ap = average_precision(self._dets, self._gts, self.iou_thresholds, self.max_detections)
        froc = detection_froc(self._dets, self._gts, self.fp_rates, iou_threshold=self.froc_iou)
        return DetectionScores(ap=ap, froc=froc, cases=dict(self._cases), n_truth=sum(c.n_truth for c in self._cases.values()),
                               n_detections=sum(c.n_detections for c in self._cases.values()))

    def reset(self) -> None:
        """Forget all images."""
        self._dets: list[Any] = []
        self._gts: list[Any] = []
        self._cases: dict[str, CaseAP] = {}

    def __len__(self) -> int:
        return len(self._cases)
