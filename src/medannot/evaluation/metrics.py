"""Segmentation metrics on binary masks, with anisotropic spacing in mm.

All functions are pure: they take two binary masks of the same shape (2D or 3D
numpy arrays; any non-zero value counts as foreground) and, where distances or
volumes are involved, the voxel spacing in mm (one value per array axis).

Surfaces
    A surface (boundary) voxel is a foreground voxel with at least one of its
    ``2 * ndim`` *face* neighbours (6-connectivity in 3D, 4-connectivity in 2D)
    in the background or outside the image: ``mask & ~binary_erosion(mask)``
    with the face-connected structuring element and zeros beyond the image
    border. This is MedPy's ``connectivity=1`` default and MONAI's
    ``get_mask_edges`` (``use_subvoxels=False``).

Distances
    Exact Euclidean distances in mm between voxel centres, from a distance
    transform of the other mask's surface (``scipy.ndimage.distance_transform_edt``
    with ``sampling=spacing``). Both transforms are computed once, inside the
    bounding box of the union of both masks grown by one voxel (clipped to the
    image): every surface voxel of either mask lies inside that box and the
    erosion of a voxel only looks one voxel away, so the crop changes no
    distance (``tests/evaluation`` checks this against ``crop=False``).

Empty masks (never a silent NaN; the case is flagged in ``empty``)
    - both empty (``empty="both"``): dice = iou = precision = recall = specificity
      = surface Dice = 1.0; all distances 0.0 mm.
    - exactly one empty (``empty="truth"`` or ``"prediction"``): dice = iou =
      precision = recall = surface Dice = 0.0 (a ratio 0/0 counts as the worst
      case, 0.0); every distance is the documented finite worst case
      :func:`worst_distance`: the diagonal of the image extent,
      ``sqrt(sum((shape_i * spacing_i)^2))`` mm, which is larger than any
      distance that can occur inside the image. ``inf`` would be honest but
      breaks averages; MONAI's NaN is dropped from averages and makes a model
      that misses look better.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from medannot.errors import InputError
from medannot.evaluation.record import Record

__all__ = [
    "Empty",
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
]

#: Connectivity of the erosion that finds surface voxels (1 = face neighbours only).
SURFACE_CONNECTIVITY = 1


class Empty(enum.StrEnum):
    """Which of the two masks is empty (the value of the ``empty`` field)."""

    NONE = ""
    TRUTH = "truth"
    PREDICTION = "prediction"
    BOTH = "both"

    @classmethod
    def of(cls, pred_any: bool, truth_any: bool) -> Empty:
        """Classify a pair from whether each mask has any foreground."""
        if pred_any and truth_any:
            return cls.NONE
        if not pred_any and not truth_any:
            return cls.BOTH
        return cls.TRUTH if pred_any else cls.PREDICTION


# --------------------------------------------------------------------------- input checks


def _mask(array: Any, name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise InputError(f"{name} mask must be a 2D or 3D array, got {arr.ndim} axes (shape {arr.shape}); drop channel axes first")
    if arr.dtype != bool:
        arr = arr != 0
    return arr


def _check(pred: Any, truth: Any, spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    p = _mask(pred, "prediction")
    t = _mask(truth, "truth")
    if p.shape != t.shape:
        raise InputError(f"prediction and truth masks must have the same shape, got {p.shape} and {t.shape}; resample the prediction onto the truth grid")
    if spacing is None:
        sp = (1.0,) * p.ndim
    else:
        sp = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=np.float64)))
        if len(sp) == 1:
            sp = sp * p.ndim
        if len(sp) != p.ndim or not all(math.isfinite(s) and s > 0 for s in sp):
            raise InputError(f"spacing must be {p.ndim} positive finite values in mm (one per array axis), got {tuple(spacing)}")
    return p, t, sp


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Finite worst-case distance used when exactly one mask is empty.

    Definition: the diagonal of the image extent, ``sqrt(sum((n_i * s_i)^2))``
    in mm, strictly larger than any distance between two voxel centres of the
    image (those are at most ``sqrt(sum(((n_i - 1) * s_i)^2))``).

    Args:
        shape: Image shape in voxels.
        spacing: Voxel spacing in mm.

    Returns:
        The distance in mm.
    """
    return float(math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True))))


# --------------------------------------------------------------------------- overlap metrics


@dataclass(frozen=True)
class _Counts:
    tp: int
    fp: int
    fn: int
    tn: int


def _counts(p: np.ndarray, t: np.ndarray) -> _Counts:
    n_p = int(np.count_nonzero(p))
    n_t = int(np.count_nonzero(t))
    tp = int(np.count_nonzero(p & t)) if n_p and n_t else 0
    fp, fn = n_p - tp, n_t - tp
    return _Counts(tp=tp, fp=fp, fn=fn, tn=int(p.size) - tp - fp - fn)


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def _dice(c: _Counts) -> float:
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, both_empty=c.tp + c.fp + c.fn == 0)


def _iou(c: _Counts) -> float:
    return _ratio(c.tp, c.tp + c.fp + c.fn, both_empty=c.tp + c.fp + c.fn == 0)


def _precision(c: _Counts) -> float:
    return _ratio(c.tp, c.tp + c.fp, both_empty=c.tp + c.fp + c.fn == 0)


def _recall(c: _Counts) -> float:
    return _ratio(c.tp, c.tp + c.fn, both_empty=c.tp + c.fp + c.fn == 0)


def _specificity(c: _Counts) -> float:
    # TN + FP == 0 only when the truth fills the whole image; there is then no false positive to make.
    return _ratio(c.tn, c.tn + c.fp, both_empty=True)


def dice(pred: Any, truth: Any) -> float:
    """Dice similarity coefficient ``2|P∩T| / (|P| + |T|)`` (unitless, 0..1).

    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    return _dice(_counts(*_check(pred, truth)[:2]))


def iou(pred: Any, truth: Any) -> float:
    """Intersection over union (Jaccard) ``|P∩T| / |P∪T|`` (unitless, 0..1).

    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    return _iou(_counts(*_check(pred, truth)[:2]))


def precision(pred: Any, truth: Any) -> float:
    """Precision (positive predictive value) ``TP / (TP + FP)`` (unitless, 0..1).

    Empty rule: both empty -> 1.0; empty prediction with non-empty truth (0/0) -> 0.0.
    """
    return _precision(_counts(*_check(pred, truth)[:2]))


def recall(pred: Any, truth: Any) -> float:
    """Recall (sensitivity) ``TP / (TP + FN)`` (unitless, 0..1).

    Empty rule: both empty -> 1.0; empty truth with non-empty prediction (0/0) -> 0.0.
    """
    return _recall(_counts(*_check(pred, truth)[:2]))


def specificity(pred: Any, truth: Any) -> float:
    """Specificity ``TN / (TN + FP)`` over the whole image (unitless, 0..1).

    It depends on the field of view (background voxels) and is near 1 for
    small organs in large images. Empty rule: when the truth fills the image
    (no negatives, 0/0) -> 1.0; empty masks need no special rule.
    """
    return _specificity(_counts(*_check(pred, truth)[:2]))


def volume_difference(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """Signed volume difference ``V(P) - V(T)`` in mm^3 (mm^2 for 2D masks).

    Positive means over-segmentation. Empty rule: an empty mask has volume 0.
    """
    p, t, sp = _check(pred, truth, spacing)
    return (int(np.count_nonzero(p)) - int(np.count_nonzero(t))) * float(np.prod(sp))


# --------------------------------------------------------------------------- surface distances


def _bbox(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Half-open per-axis bounds of the foreground, or None when empty."""
    bounds = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(np.any(mask, axis=other))
        if idx.size == 0:
            return None
        bounds.append((int(idx[0]), int(idx[-1]) + 1))
    return bounds


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, SURFACE_CONNECTIVITY)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


@dataclass(frozen=True)
class SurfaceDistances:
    """Both directed surface-distance sets of a mask pair; every surface metric derives from it.

    Attributes:
        pred_to_truth: Distance (mm) from each prediction surface voxel to the
            nearest truth surface voxel, in C order of the voxels. Empty array
            when either mask is empty.
        truth_to_pred: Distance (mm) from each truth surface voxel to the
            nearest prediction surface voxel. Empty when either mask is empty.
        empty: Which mask is empty (:class:`Empty`).
        worst_mm: The finite worst-case distance of :func:`worst_distance` (mm),
            returned by every distance metric when exactly one mask is empty.
    """

    pred_to_truth: np.ndarray
    truth_to_pred: np.ndarray
    empty: Empty
    worst_mm: float

    def _special(self, both: float, one: float) -> float | None:
        if self.empty is Empty.BOTH:
            return both
        if self.empty is not Empty.NONE:
            return one
        return None

    def hausdorff(self) -> float:
        """Hausdorff distance (mm): the larger of the two directed maxima. Empty: both 0.0, one worst_mm."""
        special = self._special(0.0, self.worst_mm)
        if special is not None:
            return special
        return float(max(self.pred_to_truth.max(), self.truth_to_pred.max()))

    def hd95(self) -> float:
        """95th-percentile Hausdorff distance (mm), MONAI's definition.

        The larger of the two directed 95th percentiles (numpy's linear
        interpolation, as ``torch.quantile``). Empty: both 0.0, one worst_mm.
        """
        special = self._special(0.0, self.worst_mm)
        if special is not None:
            return special
        return float(max(np.percentile(self.pred_to_truth, 95), np.percentile(self.truth_to_pred, 95)))

    def hd95_pooled(self) -> float:
        """95th percentile (mm) of both directed distance sets pooled, MedPy's ``hd95``.

        Empty: both 0.0, one worst_mm.
        """
        special = self._special(0.0, self.worst_mm)
        if special is not None:
            return special
        return float(np.percentile(np.concatenate([self.pred_to_truth, self.truth_to_pred]), 95))

    def assd(self) -> float:
        """Average symmetric surface distance (mm): the mean of both directed distance sets pooled.

        ``sum(d(P->T)) + sum(d(T->P))`` divided by the number of surface voxels
        of both masks: MedPy 0.5 ``assd`` and MONAI's
        ``compute_average_surface_distance(symmetric=True)``. (MedPy 0.4 and
        older averaged the two directed means instead; the two differ when the
        surfaces have different voxel counts.) Empty: both 0.0, one worst_mm.
        """
        special = self._special(0.0, self.worst_mm)
        if special is not None:
            return special
        total = float(self.pred_to_truth.sum() + self.truth_to_pred.sum())
        return total / (self.pred_to_truth.size + self.truth_to_pred.size)

    def surface_dice(self, tolerance_mm: float = 1.0) -> float:
        """Normalised surface Dice at ``tolerance_mm`` (unitless, 0..1).

        The fraction of surface voxels of both masks lying within
        ``tolerance_mm`` (``d <= tolerance``) of the other surface, surfaces
        counted in voxels (MONAI ``compute_surface_dice`` with
        ``use_subvoxels=False``). Empty: both 1.0, one 0.0.
        """
        if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
            raise InputError(f"surface Dice tolerance must be a finite number of mm >= 0, got {tolerance_mm}")
        special = self._special(1.0, 0.0)
        if special is not None:
            return special
        good = int(np.count_nonzero(self.pred_to_truth <= tolerance_mm)) + int(np.count_nonzero(self.truth_to_pred <= tolerance_mm))
        return good / (self.pred_to_truth.size + self.truth_to_pred.size)


def surface_distances(pred: Any, truth: Any, spacing: Sequence[float], crop: bool = True) -> SurfaceDistances:
    """Directed surface distances in both directions, from two distance transforms.

    Args:
        pred: Predicted binary mask (2D or 3D).
        truth: Reference binary mask, same shape.
        spacing: Voxel spacing in mm, one value per axis.
        crop: Compute inside the union bounding box grown by one voxel (exact, faster).
            ``False`` computes on the whole image; kept for the equivalence test.

    Returns:
        :class:`SurfaceDistances`; when a mask is empty its arrays are empty and
        its ``empty`` field says which.

    Raises:
        InputError: On shape mismatch, non 2D/3D masks or invalid spacing.
    """
    p, t, sp = _check(pred, truth, spacing)
    worst = worst_distance(p.shape, sp)
    none = np.zeros(0, dtype=np.float64)
    if crop:
        pb, tb = _bbox(p), _bbox(t)
        if pb is None or tb is None:
            return SurfaceDistances(none, none, Empty.of(pb is not None, tb is not None), worst)
        box = tuple(
            slice(max(min(a[0], b[0]) - 1, 0), min(max(a[1], b[1]) + 1, n)) for a, b, n in zip(pb, tb, p.shape, strict=True)
        )
        p, t = p[box], t[box]
    else:
        empty = Empty.of(bool(p.any()), bool(t.any()))
        if empty is not Empty.NONE:
            return SurfaceDistances(none, none, empty, worst)
    p_surf = _surface(p)
    t_surf = _surface(t)
    to_truth = ndimage.distance_transform_edt(~t_surf, sampling=sp)[p_surf]
    to_pred = ndimage.distance_transform_edt(~p_surf, sampling=sp)[t_surf]
    return SurfaceDistances(np.asarray(to_truth, np.float64), np.asarray(to_pred, np.float64), Empty.NONE, worst)


def hausdorff(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """Hausdorff distance (maximum surface distance, both directions) in mm.

    Empty rule: both empty -> 0.0; exactly one empty -> :func:`worst_distance`.
    """
    return surface_distances(pred, truth, spacing).hausdorff()


def hd95(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm, MONAI's definition.

    The larger of the two directed 95th percentiles of surface distances.
    Empty rule: both empty -> 0.0; exactly one empty -> :func:`worst_distance`.
    """
    return surface_distances(pred, truth, spacing).hd95()


def hd95_pooled(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """95th percentile of the pooled surface distances of both directions in mm (MedPy ``hd95``).

    Empty rule: both empty -> 0.0; exactly one empty -> :func:`worst_distance`.
    """
    return surface_distances(pred, truth, spacing).hd95_pooled()


def assd(pred: Any, truth: Any, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm: mean of the pooled distances of both directions.

    MedPy 0.5 ``assd`` and MONAI symmetric ASD (MedPy 0.4 averaged the two directed means).

    Empty rule: both empty -> 0.0; exactly one empty -> :func:`worst_distance`.
    """
    return surface_distances(pred, truth, spacing).assd()


def surface_dice(pred: Any, truth: Any, spacing: Sequence[float], tolerance_mm: float = 1.0) -> float:
    """Normalised surface Dice at ``tolerance_mm`` mm (unitless, 0..1).

    Fraction of both surfaces (counted in voxels) within the tolerance of the other surface.
    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    return surface_distances(pred, truth, spacing).surface_dice(tolerance_mm)


# --------------------------------------------------------------------------- all at once


@dataclass(frozen=True, eq=False, repr=False)
class SegmentationMetrics(Record):
    """All metrics of one mask pair (one case and label), see :func:`segmentation_metrics`.

    Attributes:
        dice, iou, precision, recall, specificity: Overlap ratios (0..1).
        hausdorff, hd95, hd95_pooled, assd: Surface distances (mm).
        surface_dice: Normalised surface Dice at the tolerance (0..1).
        volume_difference, truth_volume, pred_volume: mm^3 (mm^2 for 2D masks).
        empty: Which mask is empty (:class:`Empty`); the values then follow the module's empty rule.
    """

    dice: float
    iou: float
    precision: float
    recall: float
    specificity: float
    hausdorff: float
    hd95: float
    hd95_pooled: float
    assd: float
    surface_dice: float
    volume_difference: float
    truth_volume: float
    pred_volume: float
    empty: Empty


def segmentation_metrics(pred: Any, truth: Any, spacing: Sequence[float], tolerance_mm: float = 1.0) -> SegmentationMetrics:
    """All metrics of one mask pair, with the surface distances computed once.

    Args:
        pred: Predicted binary mask (2D or 3D; non-zero is foreground).
        truth: Reference binary mask of the same shape.
        spacing: Voxel spacing in mm, one value per axis.
        tolerance_mm: Tolerance of the surface Dice in mm.

    Returns:
        :class:`SegmentationMetrics` (its mapping view has the keys ``dice, iou, precision, recall,
        specificity`` (0..1), ``hausdorff, hd95, hd95_pooled, assd`` (mm), ``surface_dice`` (0..1),
        ``volume_difference, truth_volume, pred_volume`` (mm^3; mm^2 for 2D) and ``empty`` ("truth",
        "prediction", "both" or "")). Empty masks follow the rules in this module's docstring:
        finite values, flagged.

    Raises:
        InputError: On shape mismatch, non 2D/3D masks or invalid spacing/tolerance.
    """
    p, t, sp = _check(pred, truth, spacing)
    c = _counts(p, t)
    sd = surface_distances(p, t, sp)
    voxel = float(np.prod(sp))
    pred_volume = (c.tp + c.fp) * voxel
    truth_volume = (c.tp + c.fn) * voxel
    return SegmentationMetrics(
        dice=_dice(c),
        iou=_iou(c),
        precision=_precision(c),
        recall=_recall(c),
        specificity=_specificity(c),
        hausdorff=sd.hausdorff(),
        hd95=sd.hd95(),
        hd95_pooled=sd.hd95_pooled(),
        assd=sd.assd(),
        surface_dice=sd.surface_dice(tolerance_mm),
        volume_difference=pred_volume - truth_volume,
        truth_volume=truth_volume,
        pred_volume=pred_volume,
        empty=sd.empty,
    )
