"""Instance and lesion-wise metrics: matching, lesion sensitivity/precision, panoptic quality, FROC.

Inputs
    Instance maps are 2D or 3D integer arrays: 0 is background and every other
    value is one instance (lesion). Ids need not be contiguous. Functions that
    accept "a mask or instances" treat a *binary* array (``bool``, or integer
    with values only in {0, 1}) as a mask and split it into connected
    components with **full connectivity** (26 neighbours in 3D, 8 in 2D; cc3d
    via :func:`medannot.postprocess.instances`); any other integer array is used
    as an instance map as is. A single lesion labelled 1 is therefore split
    into its components, which changes nothing when it is connected.

Criteria (value of a prediction/truth pair)
    - ``iou``: ``|P & T| / |P | T|`` (voxels; spacing cancels).
    - ``overlap``: ``|P & T| / |T|``, the fraction of the truth lesion covered by
      the prediction. ``threshold=0`` means "any overlap" detection.

    A pair is a *candidate* when its value is **strictly greater** than the
    threshold (Kirillov et al. 2019 use IoU > 0.5). Predictions in one instance
    map are disjoint, so for ``iou`` with threshold >= 0.5 every prediction and
    every truth has at most one candidate and the matching is unique.

Matching
    One-to-one. Among the candidates, :func:`scipy.optimize.linear_sum_assignment`
    picks the assignment with the largest *sum of criterion values* (for
    thresholds >= 0.5 with IoU this is just the unique matching).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from medannot.errors import ConfigError, InputError
from medannot.evaluation.metrics import Empty
from medannot.evaluation.record import OPTIONAL, Record

__all__ = [
    "LUNA16_FP_RATES",
    "Criterion",
    "FrocCurve",
    "LesionMetrics",
    "Matching",
    "PanopticQuality",
    "PredLesion",
    "TruthLesion",
    "froc",
    "froc_from_hits",
    "lesion_metrics",
    "match_instances",
    "panoptic_quality",
    "to_instances",
]

#: LUNA16 false-positive rates per case at which the FROC score averages sensitivity.
LUNA16_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class Criterion(enum.StrEnum):
    """Pairing criterion between a predicted and a true instance."""

    IOU = "iou"
    OVERLAP = "overlap"


@dataclass(frozen=True)
class Matching:
    """Result of :func:`match_instances`.

    Attributes:
        pairs: ``(pred_id, truth_id, iou)`` of every matched pair, sorted by truth id.
        unmatched_pred: Prediction ids without a partner (false positives), ascending.
        unmatched_truth: Truth ids without a partner (false negatives), ascending.
        pred_ids: All prediction ids, ascending.
        truth_ids: All truth ids, ascending.
        pred_sizes: Voxel count of each prediction id (same order as ``pred_ids``).
        truth_sizes: Voxel count of each truth id (same order as ``truth_ids``).
    """

    pairs: list[tuple[int, int, float]]
    unmatched_pred: list[int]
    unmatched_truth: list[int]
    pred_ids: list[int] = field(default_factory=list)
    truth_ids: list[int] = field(default_factory=list)
    pred_sizes: list[int] = field(default_factory=list)
    truth_sizes: list[int] = field(default_factory=list)

    @property
    def tp(self) -> int:
        """Number of matched pairs (true positives)."""
        return len(self.pairs)

    @property
    def fp(self) -> int:
        """Number of unmatched predictions (false positives)."""
        return len(self.unmatched_pred)

    @property
    def fn(self) -> int:
        """Number of unmatched truth instances (false negatives)."""
        return len(self.unmatched_truth)


@dataclass(frozen=True, eq=False, repr=False)
class TruthLesion(Record):
    """One true lesion of :func:`lesion_metrics`: id, size (mm^3, mm^2 in 2D), matched predicted id or None, IoU."""

    id: int
    size_mm: float
    matched: int | None
    iou: float


@dataclass(frozen=True, eq=False, repr=False)
class PredLesion(Record):
    """One predicted lesion of :func:`lesion_metrics`: id, size, matched true id or None, IoU, score or None."""

    id: int
    size_mm: float
    matched: int | None
    iou: float
    score: float | None


@dataclass(frozen=True, eq=False, repr=False)
class LesionMetrics(Record):
    """Lesion-wise detection metrics of one case (see :func:`lesion_metrics` for definitions and the empty rule)."""

    lesion_sensitivity: float
    lesion_precision: float
    lesion_f1: float
    false_positives: int
    tp: int
    fp: int
    fn: int
    n_truth: int
    n_pred: int
    mean_iou: float
    empty: Empty
    truth_lesions: list[TruthLesion]
    pred_lesions: list[PredLesion]


@dataclass(frozen=True, eq=False, repr=False)
class PanopticQuality(Record):
    """Panoptic quality of one image (see :func:`panoptic_quality`): ``pq = sq * rq`` and the counts."""

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    empty: Empty


@dataclass(frozen=True, eq=False, repr=False)
class FrocCurve(Record):
    """A FROC curve and score (see :func:`froc_from_hits`).

    Attributes:
        thresholds: Score thresholds, descending, starting at +inf.
        fp_per_case: False positives per case at each threshold.
        n_truth: True lesions over all cases.
        n_cases: Cases (images).
        sensitivity: Sensitivity at each threshold; None throughout when ``n_truth`` is 0.
        sensitivity_at: Sensitivity interpolated at each requested FP rate (None when undefined).
        score: Mean of ``sensitivity_at`` (None when undefined or no rate was asked for).
        undefined: Why sensitivity is undefined (absent otherwise).
    """

    thresholds: list[float]
    fp_per_case: list[float]
    n_truth: int
    n_cases: int
    sensitivity: list[float | None]
    sensitivity_at: dict[float, float | None]
    score: float | None
    undefined: str | None = field(default=None, metadata=OPTIONAL)


# --------------------------------------------------------------------------- inputs


def _criterion(criterion: Any) -> Criterion:
    try:
        return Criterion(str(criterion))
    except ValueError:
        raise ConfigError(f"criterion must be one of {[c.value for c in Criterion]}, got {criterion!r}") from None


def _threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise ConfigError(f"threshold must be in [0, 1) (pairs need a value strictly above it), got {threshold}")
    return t


def to_instances(array: Any, name: str = "instances", connectivity: int | None = None) -> np.ndarray:
    """Instance map of a binary mask or an instance map (see the module docstring).

    Args:
        array: 2D or 3D bool/integer array.
        name: Used in error messages ("prediction", "truth").
        connectivity: For binary masks: 4/8 (2D) or 6/18/26 (3D); None = full (8 / 26).

    Returns:
        An integer instance map (0 = background). An empty input gives all zeros.
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2D or 3D mask or instance map, got shape {arr.shape}; drop channel axes first")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name}: expected a bool or integer array, got {arr.dtype}; threshold probabilities first")
    if arr.dtype != bool and arr.size and int(arr.min()) < 0:
        raise InputError(f"{name}: instance ids must be >= 0, got minimum {int(arr.min())}")
    if arr.dtype == bool or not arr.size or int(arr.max()) <= 1:
        from medannot.postprocess import instances

        out, _ = instances(arr, connectivity)
        return out
    return arr


def _ids_sizes(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero ids (ascending) and their voxel counts."""
    if flat.size and int(flat.max()) < 1 << 24:  # small ids: one O(N) pass
        counts = np.bincount(flat)
        ids = np.flatnonzero(counts)
        ids = ids[ids != 0]
        return ids, counts[ids]
    ids, counts = np.unique(flat, return_counts=True)
    return ids[ids != 0], counts[ids != 0]


def _pair_table(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ids, sizes (voxels) of both maps and their (n_pred, n_truth) intersection table (voxels)."""
    if pred.shape != truth.shape:
        raise InputError(f"prediction and truth must have the same shape, got {pred.shape} and {truth.shape}; resample the prediction onto the truth grid")
    for arr, name in ((pred, "prediction"), (truth, "truth")):
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{name}: expected an integer instance map, got {arr.dtype}")
    p = pred.ravel().astype(np.int64, copy=False)
    t = truth.ravel().astype(np.int64, copy=False)
    p_ids, p_sizes = _ids_sizes(p)
    t_ids, t_sizes = _ids_sizes(t)
    inter = np.zeros((p_ids.size, t_ids.size), dtype=np.int64)
    both = (p != 0) & (t != 0)
    if both.any():
        base = int(t_ids[-1]) + 1
        codes, counts = np.unique(p[both] * base + t[both], return_counts=True)
        inter[np.searchsorted(p_ids, codes // base), np.searchsorted(t_ids, codes % base)] = counts
    return p_ids, p_sizes, t_ids, t_sizes, inter


def _assign(value: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one assignment among pairs with value > threshold, maximising the summed value."""
    cand = value > threshold
    rows = np.flatnonzero(cand.any(axis=1))
    cols = np.flatnonzero(cand.any(axis=0))
    if rows.size == 0:
        return rows, cols
    sub = cand[np.ix_(rows, cols)]
    if (sub.sum(axis=1) <= 1).all() and (sub.sum(axis=0) <= 1).all():
        r, c = np.nonzero(sub)
    else:
        r, c = linear_sum_assignment(np.where(sub, value[np.ix_(rows, cols)], 0.0), maximize=True)
        ok = sub[r, c]
        r, c = r[ok], c[ok]
    return rows[r], cols[c]


def match_instances(
    pred_instances: Any, truth_instances: Any, criterion: Criterion | str = Criterion.IOU, threshold: float = 0.5
) -> Matching:
    """Match predicted to true instances one-to-one.

    Args:
        pred_instances: Predicted instance map (2D/3D integer, 0 = background).
        truth_instances: True instance map, same shape.
        criterion: ``"iou"`` or ``"overlap"`` (fraction of the truth covered), see the module docstring.
        threshold: A pair can match only if its criterion value is strictly greater (0 <= threshold < 1).

    Returns:
        A :class:`Matching`; ``pairs`` carry the IoU of each pair whatever the criterion.
        Empty maps give no pairs (and every instance of the other map unmatched).
    """
    crit, thr = _criterion(criterion), _threshold(threshold)
    pred = np.asarray(pred_instances)
    truth = np.asarray(truth_instances)
    p_ids, p_sizes, t_ids, t_sizes, inter = _pair_table(pred, truth)
    union = p_sizes[:, None] + t_sizes[None, :] - inter
    iou = inter / np.maximum(union, 1)
    value = iou if crit is Criterion.IOU else inter / np.maximum(t_sizes[None, :], 1)
    r, c = _assign(value, thr)
    order = np.argsort(t_ids[c], kind="stable")
    r, c = r[order], c[order]
    pairs = [(int(p_ids[i]), int(t_ids[j]), float(iou[i, j])) for i, j in zip(r, c, strict=True)]
    un_p = np.setdiff1d(np.arange(p_ids.size), r)
    un_t = np.setdiff1d(np.arange(t_ids.size), c)
    return Matching(
        pairs=pairs,
        unmatched_pred=[int(x) for x in p_ids[un_p]],
        unmatched_truth=[int(x) for x in t_ids[un_t]],
        pred_ids=[int(x) for x in p_ids],
        truth_ids=[int(x) for x in t_ids],
        pred_sizes=[int(x) for x in p_sizes],
        truth_sizes=[int(x) for x in t_sizes],
    )


# --------------------------------------------------------------------------- lesion-wise


def _drop_small(inst: np.ndarray, min_size_mm: float, voxel_mm: float) -> np.ndarray:
    if min_size_mm <= 0 or not inst.any():
        return inst
    ids, inv = np.unique(inst.ravel(), return_inverse=True)
    small = np.bincount(inv) * voxel_mm < min_size_mm - 1e-9 * voxel_mm
    small[ids == 0] = False
    return np.where(small[inv].reshape(inst.shape), 0, inst)


def _empty_kind(n_pred: int, n_truth: int) -> Empty:
    return Empty.of(bool(n_pred), bool(n_truth))


def lesion_metrics(
    pred_mask_or_instances: Any,
    truth_mask_or_instances: Any,
    spacing: Sequence[float],
    criterion: Criterion | str = Criterion.IOU,
    threshold: float = 0.5,
    min_size_mm: float = 0.0,
    scores: Mapping[int, float] | None = None,
    connectivity: int | None = None,
) -> LesionMetrics:
    """Lesion-wise detection metrics of one case.

    Definitions (counts of lesions, after one-to-one matching by :func:`match_instances`):
    ``lesion_sensitivity = TP / (TP + FN)`` (lesion recall), ``lesion_precision = TP / (TP + FP)``,
    ``lesion_f1 = 2 TP / (2 TP + FP + FN)``, ``false_positives = FP`` (per case),
    ``mean_iou`` = mean IoU of the matched pairs.

    Empty rule (same as :mod:`medannot.evaluation.metrics`; the case is flagged in ``empty``):
    no truth and no predicted lesion (``empty="both"``): sensitivity = precision = F1 =
    mean_iou = 1.0. Exactly one side empty (``"truth"``: nothing to find but something
    predicted; ``"prediction"``: nothing predicted): every ratio is 0/0 or 0 and counts as the
    worst case 0.0, so a model that predicts nothing is never rewarded with precision 1.0.
    ``mean_iou`` is 0.0 whenever there is no matched pair but lesions exist.

    Args:
        pred_mask_or_instances: Binary mask (split into components) or instance map, 2D/3D.
        truth_mask_or_instances: Same, same shape.
        spacing: Voxel spacing in mm per array axis (for ``min_size_mm`` and lesion sizes).
        criterion: ``"iou"`` or ``"overlap"``.
        threshold: Pairs need a criterion value strictly above it.
        min_size_mm: Lesions (truth *and* prediction) smaller than this many mm^3 (3D) or mm^2 (2D)
            are removed before matching. 0 keeps all.
        scores: Optional confidence per predicted id (instance maps only); reported per
            predicted lesion (``pred_lesions[i]["score"]``). Ids missing from it are an error.
        connectivity: Connectivity used to split binary masks (None = full: 26 in 3D, 8 in 2D).

    Returns:
        :class:`LesionMetrics`: ``lesion_sensitivity``, ``lesion_precision``, ``lesion_f1``,
        ``false_positives``, ``tp``, ``fp``, ``fn``, ``n_truth``, ``n_pred``, ``mean_iou``, ``empty``
        ("", "truth", "prediction", "both"), ``truth_lesions`` (:class:`TruthLesion` per truth lesion:
        id, size_mm, matched pred id or None, iou) and ``pred_lesions`` (:class:`PredLesion` per
        predicted lesion: id, size_mm, matched truth id or None, iou, score).
    """
    pred = to_instances(pred_mask_or_instances, "prediction", connectivity)
    truth = to_instances(truth_mask_or_instances, "truth", connectivity)
    sp = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if sp.size == 1:
        sp = np.repeat(sp, pred.ndim)
    if sp.size != pred.ndim or not np.all(np.isfinite(sp) & (sp > 0)):
        raise InputError(f"spacing must be {pred.ndim} positive finite values in mm (one per array axis), got {tuple(np.atleast_1d(spacing))}")
    if min_size_mm < 0:
        raise ConfigError(f"min_size_mm must be >= 0 (mm^3 in 3D, mm^2 in 2D), got {min_size_mm}")
    voxel = float(np.prod(sp))
    pred = _drop_small(pred, float(min_size_mm), voxel)
    truth = _drop_small(truth, float(min_size_mm), voxel)
    m = match_instances(pred, truth, criterion, threshold)
    if scores is not None:
        missing = sorted(set(m.pred_ids) - {int(k) for k in scores})
        if missing:
            raise InputError(f"scores: expected a score for every predicted instance id, missing {missing[:10]}; pass an instance map whose ids are the keys of scores")
    tp, fp, fn = m.tp, m.fp, m.fn
    empty = _empty_kind(len(m.pred_ids), len(m.truth_ids))
    both = empty is Empty.BOTH

    def ratio(num: int, den: int) -> float:
        return (1.0 if both else 0.0) if den == 0 else num / den

    by_truth = {t: (p, v) for p, t, v in m.pairs}
    by_pred = {p: (t, v) for p, t, v in m.pairs}
    return LesionMetrics(
        lesion_sensitivity=ratio(tp, tp + fn),
        lesion_precision=ratio(tp, tp + fp),
        lesion_f1=ratio(2 * tp, 2 * tp + fp + fn),
        false_positives=fp,
        tp=tp,
        fp=fp,
        fn=fn,
        n_truth=len(m.truth_ids),
        n_pred=len(m.pred_ids),
        mean_iou=float(np.mean([v for _, _, v in m.pairs])) if tp else (1.0 if both else 0.0),
        empty=empty,
        truth_lesions=[
            TruthLesion(t, n * voxel, by_truth.get(t, (None, 0.0))[0], by_truth.get(t, (None, 0.0))[1])
            for t, n in zip(m.truth_ids, m.truth_sizes, strict=True)
        ],
        pred_lesions=[
            PredLesion(p, n * voxel, by_pred.get(p, (None, 0.0))[0], by_pred.get(p, (None, 0.0))[1],
                       None if scores is None else float(scores[p]))
            for p, n in zip(m.pred_ids, m.pred_sizes, strict=True)
        ],
    )


def panoptic_quality(pred_instances: Any, truth_instances: Any, connectivity: int | None = None) -> PanopticQuality:
    """Class-agnostic panoptic quality of one image (Kirillov et al., CVPR 2019).

    Segments match when IoU > 0.5 (unique). ``SQ = sum(IoU of matches) / TP``,
    ``RQ = TP / (TP + FP/2 + FN/2)``, ``PQ = SQ * RQ = sum(IoU) / (TP + FP/2 + FN/2)``.
    Binary masks are split into components (full connectivity, see the module docstring).

    Empty rule: no segment on either side (``empty="both"``): pq = sq = rq = 1.0 (flagged);
    otherwise with TP = 0 all three are 0.0. Run it per class for multi-class maps.

    Returns:
        :class:`PanopticQuality`: ``pq``, ``sq``, ``rq``, ``tp``, ``fp``, ``fn``, ``empty``.
    """
    pred = to_instances(pred_instances, "prediction", connectivity)
    truth = to_instances(truth_instances, "truth", connectivity)
    m = match_instances(pred, truth, Criterion.IOU, 0.5)
    tp, fp, fn = m.tp, m.fp, m.fn
    empty = _empty_kind(len(m.pred_ids), len(m.truth_ids))
    if empty is Empty.BOTH:
        pq = sq = rq = 1.0
    else:
        iou_sum = float(sum(v for _, _, v in m.pairs))
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = iou_sum / tp if tp else 0.0
        pq = sq * rq
    return PanopticQuality(pq=pq, sq=sq, rq=rq, tp=tp, fp=fp, fn=fn, empty=empty)


# --------------------------------------------------------------------------- FROC


def froc_from_hits(
    tp_scores: Sequence[float], fp_scores: Sequence[float], n_truth: int, n_cases: int, fp_rates: Sequence[float] = LUNA16_FP_RATES
) -> FrocCurve:
    """FROC curve and score from per-lesion best hit scores and false-positive scores.

    At an operating threshold ``s`` a prediction is kept when its score >= s; a true lesion is
    detected when its best hitting prediction is kept; ``sensitivity(s) = detected / n_truth``,
    ``fp_per_case(s) = kept false positives / n_cases``. The curve has one point per distinct
    score (descending thresholds) after a first point (0, 0) at threshold +inf.

    ``sensitivity_at[r]`` interpolates sensitivity linearly in FP/case along that polyline
    (``np.interp``, as the CAMELYON16/LUNA16 scripts and MONAI's ``compute_froc_score``); beyond
    the largest FP rate reached the last sensitivity is held. ``score`` is their mean.

    Args:
        tp_scores: For each detected true lesion, the highest score among predictions that hit it
            (undetected lesions are not listed; they count in ``n_truth``).
        fp_scores: Scores of predictions that hit no true lesion.
        n_truth: Number of true lesions over all cases.
        n_cases: Number of cases (images).
        fp_rates: False positives per case at which sensitivity is read.

    Returns:
        :class:`FrocCurve`: ``thresholds``, ``sensitivity``, ``fp_per_case`` (lists, same length),
        ``sensitivity_at`` ({rate: value}), ``score``, ``n_truth``, ``n_cases``. With ``n_truth == 0``
        sensitivity is undefined: the lists hold None for it, ``sensitivity_at`` values and ``score``
        are None and ``undefined`` says why.
    """
    if n_cases <= 0:
        raise InputError(f"froc: expected at least one case, got {n_cases}")
    tp = np.asarray(tp_scores, dtype=np.float64).ravel()
    fp = np.asarray(fp_scores, dtype=np.float64).ravel()
    rates = [float(r) for r in fp_rates]
    thr = np.unique(np.concatenate([tp, fp]))[::-1]
    n_tp = np.searchsorted(np.sort(-tp), -thr, side="right")
    n_fp = np.searchsorted(np.sort(-fp), -thr, side="right")
    fpc = np.concatenate([[0.0], n_fp / n_cases])
    common = {"thresholds": [float("inf")] + thr.tolist(), "fp_per_case": fpc.tolist(), "n_truth": int(n_truth), "n_cases": int(n_cases)}
    if n_truth <= 0:
        return FrocCurve(**common, sensitivity=[None] * fpc.size, sensitivity_at={r: None for r in rates}, score=None,
                         undefined="no true lesion: sensitivity is undefined")
    sens = np.concatenate([[0.0], n_tp / n_truth])
    at = np.interp(rates, fpc, sens)
    return FrocCurve(**common, sensitivity=sens.tolist(), sensitivity_at=dict(zip(rates, at.tolist(), strict=True)),
                     score=float(np.mean(at)) if rates else None)


def froc(
    cases: Sequence[tuple[Any, Any, Mapping[int, float]]],
    fp_rates: Sequence[float] = LUNA16_FP_RATES,
    criterion: Criterion | str = Criterion.IOU,
    threshold: float = 0.5,
) -> FrocCurve:
    """Lesion-level FROC over cases (LUNA16-style score = mean sensitivity at ``fp_rates``).

    Hit rule (LUNA16/CAMELYON16): a prediction *hits* a true lesion when their criterion value
    exceeds ``threshold``. A lesion counts as detected at threshold ``s`` when any prediction
    hitting it has score >= s (so its best hitting score is used); a prediction hitting no lesion
    is a false positive; further predictions hitting an already detected lesion are ignored (not
    false positives). With IoU > 0.5 this equals one-to-one matching. See :func:`froc_from_hits`
    for the curve and the interpolation.

    Args:
        cases: ``(pred_instances, truth_instances, scores)`` per case; ``scores`` maps every
            predicted instance id to its confidence.
        fp_rates: False positives per case at which sensitivity is averaged.
        criterion: ``"iou"`` or ``"overlap"``.
        threshold: Hit threshold (strictly greater).

    Returns:
        As :func:`froc_from_hits`. No case is an error; no true lesion gives ``score=None``.
    """
    crit, thr = _criterion(criterion), _threshold(threshold)
    if len(cases) == 0:
        raise InputError("froc: expected at least one (pred_instances, truth_instances, scores) case, got none")
    tp_scores: list[float] = []
    fp_scores: list[float] = []
    n_truth = 0
    for k, (pred_in, truth_in, scores) in enumerate(cases):
        pred, truth = np.asarray(pred_in), np.asarray(truth_in)
        p_ids, p_sizes, t_ids, t_sizes, inter = _pair_table(pred, truth)
        if crit is Criterion.IOU:
            value = inter / np.maximum(p_sizes[:, None] + t_sizes[None, :] - inter, 1)
        else:
            value = inter / np.maximum(t_sizes[None, :], 1)
        try:
            s = np.array([float(scores[int(i)]) for i in p_ids], dtype=np.float64)
        except KeyError as exc:
            raise InputError(f"froc: case {k}: no score for predicted instance id {exc.args[0]}; give a score for every id") from None
        hit = value > thr
        n_truth += t_ids.size
        fp_scores.extend(s[~hit.any(axis=1)].tolist())
        best = np.where(hit, s[:, None], -np.inf).max(axis=0, initial=-np.inf)
        tp_scores.extend(best[np.isfinite(best)].tolist())
    return froc_from_hits(tp_scores, fp_scores, n_truth, len(cases), fp_rates)
