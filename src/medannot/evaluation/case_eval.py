"""Work done on one case in a worker process: read the pair, score every label, optional lesions and thumbnails.

Each function reads its files itself and returns small results (rows, lists of
scores, PNG text), so a pool of workers evaluates many large volumes with the
memory of one case per worker.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import GeometryError, InputError
from medannot.evaluation.results import GRID_ATOL_MM, LesionColumns, MetricRow
from medannot.evaluation.thumbnails import Thumbnail

__all__ = ["MAX_EVALUATED_LABELS", "CaseOptions", "CaseOutcome", "absent_row", "check_label_map", "evaluate_case", "load_pair",
           "thumbnail_case"]

#: Most label values one case may hold: each is scored on its own (surface distances included).
MAX_EVALUATED_LABELS = 500
#: A mask with more values than this, of which fewer than this fraction of neighbours are equal, is an intensity image.
_INTENSITY_VALUES, _INTENSITY_EQUAL = 16, 0.5


@dataclass(frozen=True)
class CaseOptions:
    """Settings shared by every case (picklable, sent to workers)."""

    labels: dict[int, str] | None
    resample: bool
    tolerance_mm: float
    lesions: bool = False
    match: str = "iou"
    match_threshold: float = 0.5


@dataclass
class CaseOutcome:
    """What one case returns to the parent process.

    Attributes:
        rows: One row per label.
        present: Non-zero label values present in either mask.
        ndim: Spatial dimensions (2 or 3).
        froc_hits: Per label value ``(tp_scores, fp_scores, n_truth)`` for the FROC, or None when
            the prediction has no scored instances (``froc_reason`` says why).
        froc_reason: Why FROC hits are missing ("" when present).
    """

    rows: list[MetricRow]
    present: set[int]
    ndim: int
    froc_hits: dict[int, tuple[list[float], list[float], int]] | None = None
    froc_reason: str = ""


def _planes(pred_img: Any, truth_img: Any) -> tuple[Any, Any]:
    """2D images stored as one-slice NIfTI volumes (``medannot annotate`` writes 2D labels so) become 2D again.

    A one-slice volume is read as a plane when the other side is 2D or is also a one-slice volume,
    so surfaces and lesions are computed in 2D (a one-slice 3D mask would be all boundary).
    """
    pred_flat = pred_img.ndim == 3 and pred_img.spatial_shape[2] == 1
    truth_flat = truth_img.ndim == 3 and truth_img.spatial_shape[2] == 1
    if pred_flat and (truth_img.ndim == 2 or truth_flat):
        pred_img = pred_img.as_plane()
    if truth_flat and (pred_img.ndim == 2):
        truth_img = truth_img.as_plane()
    return pred_img, truth_img


def _on_truth_grid(img: Any, truth_img: Any, path: Path, truth_path: Path, resample: bool) -> Any:
    if img.same_grid(truth_img, atol=GRID_ATOL_MM):
        return img
    if not resample:
        raise GeometryError(
            f"prediction {path} (shape {img.spatial_shape}, {img.geometry!r}) and truth {truth_path} "
            f"(shape {truth_img.spatial_shape}, {truth_img.geometry!r}) are on different grids; "
            "run medannot evaluate with --resample (or resample the prediction onto the truth grid)"
        )
    from medannot.transforms.spatial import resample_to_grid

    return resample_to_grid(img, truth_img.geometry, truth_img.spatial_shape, order=0)


def _one_channel(img: Any, path: Path, role: str) -> None:
    """A label map has one channel: a 4D file (a channel axis, a time series) names the file and what to pass."""
    if img.channels != 1:
        raise InputError(f"the {role} has {img.channels} channels (a 4D file or a colour picture); a label map has one: pass one "
                         "channel, or the argmax of per-class maps", path)


def load_pair(pred_path: Path | None, truth_path: Path, resample: bool) -> tuple[np.ndarray, Any, np.ndarray]:
    """Read prediction and truth labels on the truth grid.

    Returns:
        ``(pred_array, truth_image, truth_array)``; a missing prediction (None) reads as all zeros.

    Raises:
        GeometryError: Different grids and ``resample`` is False.
    """
    from medannot.io import read_image

    truth_img = read_image(truth_path, kind="label")
    _one_channel(truth_img, truth_path, "truth")
    if pred_path is None:
        if truth_img.ndim == 3 and truth_img.spatial_shape[2] == 1:
            truth_img = truth_img.as_plane()
        truth = truth_img.scalar()
        return np.zeros(truth.shape, dtype=truth.dtype), truth_img, truth
    pred_img = read_image(pred_path, kind="label")
    _one_channel(pred_img, pred_path, "prediction")
    pred_img, truth_img = _planes(pred_img, truth_img)
    pred_img = _on_truth_grid(pred_img, truth_img, pred_path, truth_path, resample)
    return pred_img.scalar(), truth_img, truth_img.scalar()


def _present_values(array: np.ndarray) -> set[int]:
    """Non-zero label values present in an integer array."""
    if array.dtype == bool:
        return {1} if array.any() else set()
    if np.issubdtype(array.dtype, np.unsignedinteger) and array.size and int(array.max()) < 65536:
        counts = np.bincount(array.ravel())
        return {int(v) for v in np.flatnonzero(counts) if v != 0}
    return {int(v) for v in np.unique(array) if v != 0}


def _neighbours_equal(array: np.ndarray, planes: int = 16) -> float:
    """Fraction of voxel pairs, next to each other along the first axis, that hold the same value (on up to
    ``planes`` evenly spaced planes of the last axis, so the cost stays small); 1.0 for arrays too small to tell."""
    if array.ndim < 2 or array.shape[0] < 2:
        return 1.0
    last = array.shape[-1]
    picks = np.unique(np.linspace(0, last - 1, min(planes, last)).astype(int)) if array.ndim > 2 else None
    sample = array[..., picks] if picks is not None else array
    same = np.count_nonzero(sample[1:] == sample[:-1])
    return float(same) / max(1, sample[1:].size)


def check_label_map(values: set[int], array: np.ndarray, path: Path | None, role: str) -> None:
    """Refuse what cannot be a label map to score: more label values than :data:`MAX_EVALUATED_LABELS` (each is
    scored on its own, so thousands of instance ids would run for hours), or an intensity image (many values that
    change from voxel to voxel, where labels form regions).

    Raises:
        InputError: One line naming the file and what to pass instead.
    """
    if len(values) > MAX_EVALUATED_LABELS:
        raise InputError(
            f"the {role} holds {len(values)} label values; evaluate scores each label separately and stops at {MAX_EVALUATED_LABELS}: "
            "for instance masks (one value per object) binarise them (label > 0) and use --lesions for per-object scores",
            path,
        )
    if len(values) > _INTENSITY_VALUES and _neighbours_equal(array) < _INTENSITY_EQUAL:
        raise InputError(
            f"the {role} looks like an intensity image, not a label map: {len(values)} values that change from voxel to voxel "
            f"(only {100 * _neighbours_equal(array):.0f}% of neighbours are equal); pass the label mask, not the scan",
            path,
        )


def _instance_file(label_path: Path | None) -> Path | None:
    """``instances.nii.gz`` beside a ``<case>/labels.*`` file of the ``medannot annotate`` layout."""
    if label_path is None or not Path(label_path).name.lower().startswith("label"):
        return None
    inst = Path(label_path).parent / "instances.nii.gz"
    return inst if inst.is_file() else None


def _read_instances(label_path: Path | None, truth_img: Any, truth_path: Path, resample: bool) -> np.ndarray | None:
    inst_path = _instance_file(label_path)
    if inst_path is None:
        return None
    from medannot.io import read_image

    img, _ = _planes(read_image(inst_path, kind="label"), truth_img)
    return _on_truth_grid(img, truth_img, inst_path, truth_path, resample).scalar()


def _scores(pred_path: Path | None) -> tuple[dict[int, dict[int, float]] | None, str]:
    """Instance scores by label value from ``annotation.json`` beside the prediction, or (None, reason)."""
    if pred_path is None:
        return {}, ""
    meta = Path(pred_path).parent / "annotation.json"
    if _instance_file(pred_path) is None or not meta.is_file():
        return None, "the predictions are not medannot annotate folders (<case>/annotation.json + instances.nii.gz)"
    try:
        instances = json.loads(meta.read_text())["instances"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read instances from annotation.json: {exc}", meta) from exc
    out: dict[int, dict[int, float]] = {}
    for inst in instances:
        if inst.get("score") is None:
            return None, "instance scores are missing (None) in annotation.json, as for classical methods; FROC needs a score per predicted lesion"
        out.setdefault(int(inst["label"]), {})[int(inst["id"])] = float(inst["score"])
    return out, ""


def _froc_hits(pred_inst: np.ndarray, truth_inst: np.ndarray, scores: dict[int, float], criterion: str, threshold: float) -> tuple[list[float], list[float], int]:
    """Best hit score per detected true lesion, scores of false positives, number of true lesions.

    Read back from :func:`medannot.evaluation.instances.froc` of this case alone: the curve's
    steps in detected lesions and in false positives at each threshold are those scores.
    """
    from medannot.evaluation.instances import froc

    curve = froc([(pred_inst, truth_inst, scores)], fp_rates=(), criterion=criterion, threshold=threshold)
    n_truth = int(curve.n_truth)
    thresholds = curve.thresholds[1:]
    fp = np.rint(np.asarray(curve.fp_per_case, dtype=np.float64)).astype(int)
    tp = np.zeros(fp.size, dtype=int)
    if n_truth:
        tp = np.rint(np.asarray(curve.sensitivity, dtype=np.float64) * n_truth).astype(int)
    tp_scores = [t for t, k in zip(thresholds, np.diff(tp), strict=True) for _ in range(int(k))]
    fp_scores = [t for t, k in zip(thresholds, np.diff(fp), strict=True) for _ in range(int(k))]
    return tp_scores, fp_scores, n_truth


def _lesion_columns(pred_obj: np.ndarray, truth_obj: np.ndarray, spacing: Any, options: CaseOptions) -> LesionColumns:
    from medannot.evaluation.instances import lesion_metrics, panoptic_quality

    les = lesion_metrics(pred_obj, truth_obj, spacing, criterion=options.match, threshold=options.match_threshold)
    return LesionColumns.of(les, panoptic_quality(pred_obj, truth_obj))


def evaluate_case(case: str, pred_path: Path | None, truth_path: Path, options: CaseOptions) -> CaseOutcome:
    """Score one case (runs in a worker process).

    Lesions are the connected components of each label (full connectivity), unless the
    folder holds ``instances.nii.gz`` (the ``medannot annotate`` layout), whose instance ids are used.

    Raises:
        InputError: Label values outside ``options.labels``.
        GeometryError: Different grids without ``resample``.
    """
    from medannot.evaluation.metrics import segmentation_metrics

    pred, truth_img, truth = load_pair(pred_path, truth_path, options.resample)
    present_pred, present_truth = _present_values(pred), _present_values(truth)
    for values, array, path, role in ((present_pred, pred, pred_path, "prediction"), (present_truth, truth, truth_path, "truth")):
        check_label_map(values, array, path, role)
    labels = options.labels
    if labels is not None:
        for values, path in ((present_pred, pred_path), (present_truth, truth_path)):
            unknown = sorted(values - set(labels))
            if unknown:
                raise InputError(
                    f"label values {unknown} are not in the label map {dict(sorted(labels.items()))}; add them to --labels or fix the file",
                    path,
                )
        wanted = sorted(labels)
    else:
        wanted = sorted(present_pred | present_truth)
    spacing = truth_img.geometry.spacing
    pred_inst = truth_inst = None
    scores: dict[int, dict[int, float]] | None = None
    reason = ""
    if options.lesions:
        pred_inst = _read_instances(pred_path, truth_img, truth_path, options.resample)
        truth_inst = _read_instances(truth_path, truth_img, truth_path, options.resample)
        scores, reason = _scores(pred_path)
    rows: list[MetricRow] = []
    hits: dict[int, tuple[list[float], list[float], int]] = {}
    for value in wanted:
        name = labels[value] if labels is not None else str(value)
        p, t = pred == value, truth == value
        lesion_cols = None
        if options.lesions:
            from medannot.evaluation.instances import to_instances

            p_obj = np.where(p, pred_inst, 0) if pred_inst is not None else to_instances(p, "prediction")
            t_obj = np.where(t, truth_inst, 0) if truth_inst is not None else to_instances(t, "truth")
            lesion_cols = _lesion_columns(p_obj, t_obj, spacing, options)
            if scores is not None:
                hits[value] = _froc_hits(p_obj, t_obj, scores.get(value, {}), options.match, options.match_threshold)
        metrics = segmentation_metrics(p, t, spacing, tolerance_mm=options.tolerance_mm)
        rows.append(MetricRow(case=case, label=name, metrics=metrics, lesions=lesion_cols, label_value=value))
    return CaseOutcome(rows, present_pred | present_truth, truth_img.ndim, hits if scores is not None and options.lesions else None, reason)


def absent_row(case: str, value: int, ndim: int, options: CaseOptions) -> MetricRow:
    """Row of a label absent from both masks of a case (the documented both-empty values)."""
    from medannot.evaluation.metrics import segmentation_metrics

    zero = np.zeros((1,) * ndim, dtype=bool)
    metrics = segmentation_metrics(zero, zero, (1.0,) * ndim, options.tolerance_mm)
    lesion_cols = None
    if options.lesions:
        empty = np.zeros((2,) * ndim, dtype=np.int32)
        lesion_cols = _lesion_columns(empty, empty, (1.0,) * ndim, options)
    return MetricRow(case=case, label=str(value), metrics=metrics, lesions=lesion_cols, label_value=value)


def thumbnail_case(pred_path: Path | None, truth_path: Path, values: list[int], resample: bool, max_side: int) -> dict[int, Thumbnail]:
    """Overlay thumbnails of the given label values of one case (see :mod:`medannot.evaluation.thumbnails`).

    The grey image is the input recorded in ``annotation.json`` beside the prediction or the
    truth, when it exists and lies on the truth grid (3D images on another grid are resampled
    onto it, linear); otherwise the overlay is drawn on a neutral background.
    """
    from medannot.evaluation.thumbnails import find_input_image, thumbnail

    pred, truth_img, truth = load_pair(pred_path, truth_path, resample)
    image = None
    where = find_input_image(pred_path, truth_path)
    if where is not None:
        image = _intensity_on_grid(where, truth_img)
    shown = where is not None and image is not None
    return {v: dataclasses.replace(thumbnail(pred == v, truth == v, truth_img.geometry, image, max_side), image=shown) for v in values}


def _intensity_on_grid(path: Path, truth_img: Any) -> np.ndarray | None:
    """The intensity image at ``path`` as one channel on the truth grid, or None when it cannot be placed there."""
    from medannot.errors import MedannotError
    from medannot.io import read_image

    try:
        img = read_image(path)
    except MedannotError:
        return None
    if img.ndim == 3 and truth_img.ndim == 2 and img.spatial_shape[2] == 1:
        img = img.as_plane()
    arr_img = img
    if img.ndim != truth_img.ndim:
        return None
    if not img.same_grid(truth_img, atol=GRID_ATOL_MM):
        if img.ndim == 2:
            # Raster formats carry no reliable origin; the same pixel grid is the same image.
            if img.spatial_shape != truth_img.spatial_shape:
                return None
        else:
            from medannot.transforms.spatial import resample_to_grid

            arr_img = resample_to_grid(img, truth_img.geometry, truth_img.spatial_shape, order=1)
    arr = np.asarray(arr_img.array, dtype=np.float32)
    return arr.mean(axis=0) if arr.shape[0] > 1 else arr[0]
