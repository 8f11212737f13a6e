"""Evaluate label-map files or folders against reference labels and write the report.

Cases are matched by name: the file name without its image suffix
(``.nii.gz``, ``.nii``, ``.png``, ``.tif``, ...), or the folder name for the
layout written by ``medannot annotate`` (``PRED/<case>/labels.nii.gz``). So
``PRED/liver_01/labels.nii.gz`` matches ``TRUTH/liver_01.nii.gz``.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import GeometryError, InputError

__all__ = ["EvaluationResult", "GRID_ATOL_MM", "case_name", "evaluate_paths", "find_label_files"]

#: Largest difference (mm) between the affines of two grids still treated as the same grid.
GRID_ATOL_MM = 1e-4

_SUFFIXES = (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp", ".dcm")
#: File names looked for inside a per-case prediction folder, in order.
_CASE_FOLDER_FILES = tuple(f"labels{s}" for s in _SUFFIXES) + tuple(f"label{s}" for s in _SUFFIXES)


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_paths`.

    Attributes:
        rows: One dict per case and label (``case``, ``label``, metrics, ``empty``, ``label_value``).
        summary: Per-label statistics and empty cases (see :func:`medannot.evaluation.accumulate.summarise`),
            plus ``missing_predictions`` and ``unmatched_predictions``.
        settings: The settings the evaluation ran with.
        paths: ``{"csv", "json", "html"}`` files written.
        missing_predictions: Truth cases without a prediction (scored as empty predictions).
        unmatched_predictions: Predictions without a truth (not scored).
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    settings: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: summary, settings, report paths, missing/unmatched cases and rows."""
        return {
            "summary": self.summary,
            "settings": self.settings,
            "paths": {k: str(v) for k, v in self.paths.items()},
            "missing_predictions": list(self.missing_predictions),
            "unmatched_predictions": list(self.unmatched_predictions),
            "rows": list(self.rows),
        }


def case_name(path: str | Path) -> str:
    """Case name of a label file: its name without the image suffix (``ct_01.nii.gz`` -> ``ct_01``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in _SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_SUFFIXES)


def find_label_files(path: str | Path, role: str) -> dict[str, Path]:
    """Label files under ``path`` by case name.

    Args:
        path: A label file, or a folder of label files and/or case folders holding ``labels.<suffix>``.
        role: ``"prediction"`` or ``"truth"`` (for messages).

    Raises:
        InputError: If ``path`` does not exist, holds no label file, or two files give the same case name.
    """
    p = Path(path)
    if p.is_file():
        return {case_name(p): p}
    if not p.is_dir():
        raise InputError(f"{role} path does not exist; expected a label file or a folder of label files", p)
    found: dict[str, Path] = {}
    for child in sorted(p.iterdir()):
        if child.name.startswith("."):
            continue
        if _is_image_file(child):
            name, file = case_name(child), child
        elif child.is_dir():
            inner = next((child / f for f in _CASE_FOLDER_FILES if (child / f).is_file()), None)
            if inner is None:
                continue
            name, file = child.name, inner
        else:
            continue
        if name in found:
            raise InputError(f"two {role} files for case {name!r}: {found[name].name} and {file.name}; keep one", p)
        found[name] = file
    if not found:
        raise InputError(
            f"no {role} label files found; expected <case>.nii.gz (or .nii/.png/.tif) files or <case>/labels.nii.gz folders", p
        )
    return found


def _present_values(array: np.ndarray) -> set[int]:
    """Non-zero label values present in an integer array."""
    if array.dtype == bool:
        return {1} if array.any() else set()
    if np.issubdtype(array.dtype, np.unsignedinteger) and array.size and int(array.max()) < 65536:
        counts = np.bincount(array.ravel())
        return {int(v) for v in np.flatnonzero(counts) if v != 0}
    return {int(v) for v in np.unique(array) if v != 0}


def _evaluate_case(
    case: str,
    pred_path: Path | None,
    truth_path: Path,
    labels: dict[int, str] | None,
    resample: bool,
    tolerance_mm: float,
) -> tuple[list[dict[str, Any]], set[int], int]:
    """Read one pair, check grids and label values, and compute the rows (runs in a worker process).

    Returns:
        The rows, the non-zero label values present in either mask, and the number of spatial dimensions.
    """
    from medannot.evaluation.metrics import segmentation_metrics
    from medannot.io import read_image

    truth_img = read_image(truth_path, kind="label")
    truth = truth_img.scalar()
    if pred_path is None:
        pred = np.zeros(truth.shape, dtype=truth.dtype)
    else:
        pred_img = read_image(pred_path, kind="label")
        if pred_img.ndim == 3 and truth_img.ndim == 2 and pred_img.spatial_shape[2] == 1:
            pred_img = pred_img.as_plane()  # a 2D annotation stored as a one-slice NIfTI
        elif pred_img.ndim == 2 and truth_img.ndim == 3 and truth_img.spatial_shape[2] == 1:
            truth_img = truth_img.as_plane()
            truth = truth_img.scalar()
        if not pred_img.same_grid(truth_img, atol=GRID_ATOL_MM):
            if not resample:
                raise GeometryError(
                    f"prediction {pred_path} (shape {pred_img.spatial_shape}, {pred_img.geometry!r}) and truth {truth_path} "
                    f"(shape {truth_img.spatial_shape}, {truth_img.geometry!r}) are on different grids; "
                    "resample the prediction onto the truth grid or pass resample=True"
                )
            from medannot.transforms.spatial import resample_to_grid

            pred_img = resample_to_grid(pred_img, truth_img.geometry, truth_img.spatial_shape, order=0)
        pred = pred_img.scalar()
    present_pred, present_truth = _present_values(pred), _present_values(truth)
    if labels is not None:
        for values, path in ((present_pred, pred_path), (present_truth, truth_path)):
            unknown = sorted(values - set(labels))
            if unknown:
                raise InputError(
                    f"label values {unknown} are not in the label map {dict(sorted(labels.items()))}; "
                    "add them to labels or fix the file",
                    path,
                )
        wanted = sorted(labels)
    else:
        wanted = sorted(present_pred | present_truth)
    spacing = truth_img.geometry.spacing
    rows = []
    for value in wanted:
        name = labels[value] if labels is not None else str(value)
        metrics = segmentation_metrics(pred == value, truth == value, spacing, tolerance_mm=tolerance_mm)
        rows.append({"case": case, "label": name, **metrics, "label_value": value})
    return rows, present_pred | present_truth, truth_img.ndim


def _absent_row(case: str, value: int, ndim: int, tolerance_mm: float) -> dict[str, Any]:
    """Row of a label absent from both masks of a case (the documented both-empty values)."""
    from medannot.evaluation.metrics import segmentation_metrics

    zero = np.zeros((1,) * ndim, dtype=bool)
    return {"case": case, "label": str(value), **segmentation_metrics(zero, zero, (1.0,) * ndim, tolerance_mm), "label_value": value}


def evaluate_paths(
    pred: str | Path,
    truth: str | Path,
    out_dir: str | Path,
    labels: dict[int, str] | None = None,
    resample: bool = False,
    tolerance_mm: float = 1.0,
    max_workers: int | None = None,
) -> EvaluationResult:
    """Evaluate predicted label maps against reference label maps and write the report.

    Args:
        pred: A prediction label file or folder (``<case>.nii.gz`` files or ``<case>/labels.nii.gz`` folders).
        truth: A reference label file or folder, matched to predictions by case name
            (two single files are matched to each other whatever their names).
        out_dir: Folder for ``metrics.csv``, ``metrics.json`` and ``report.html``.
        labels: Label value -> name to evaluate. Values present in a file but not listed raise
            :class:`InputError`. Default: every non-zero value present in any prediction or truth,
            named by its value; a label absent from both masks of a case scores as "both empty".
        resample: Resample a prediction on a different grid onto the truth grid (nearest neighbour)
            instead of raising :class:`GeometryError`.
        tolerance_mm: Surface Dice tolerance in mm.
        max_workers: Worker processes (default ``os.cpu_count()``); a single case runs in-process.

    Returns:
        :class:`EvaluationResult`. Truth cases without a prediction are scored as empty
        predictions and listed in ``missing_predictions``; predictions without a truth are
        listed in ``unmatched_predictions`` and not scored.

    Raises:
        InputError: Missing paths, no matching case at all, label values outside ``labels``, unreadable files.
        GeometryError: Prediction and truth grids differ (shape, or affine beyond 1e-4 mm) and ``resample`` is False.
    """
    from medannot.evaluation.accumulate import SegmentationAccumulator
    from medannot.evaluation.report import write_report

    pred_p, truth_p = Path(pred), Path(truth)
    truths = find_label_files(truth_p, "truth")
    preds = find_label_files(pred_p, "prediction")
    if pred_p.is_file() and truth_p.is_file():
        preds = {next(iter(truths)): pred_p}
    if not set(preds) & set(truths):
        raise InputError(
            f"no prediction matches a truth case by name (predictions: {', '.join(sorted(preds)[:5])}; "
            f"truths: {', '.join(sorted(truths)[:5])}); name predictions <case>.nii.gz or <case>/labels.nii.gz",
            pred_p,
        )
    if labels is not None:
        labels = {int(k): str(v) for k, v in labels.items()}
        if 0 in labels:
            raise InputError("label 0 is the background and is not evaluated; remove it from labels")
    missing = sorted(set(truths) - set(preds))
    unmatched = sorted(set(preds) - set(truths))
    cases = sorted(truths)
    jobs = [(c, preds.get(c), truths[c], labels, resample, float(tolerance_mm)) for c in cases]

    workers = min(max_workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        results = [_evaluate_case(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_evaluate_case, *job) for job in jobs]
            results = [f.result() for f in futures]

    acc = SegmentationAccumulator(tolerance_mm=tolerance_mm)
    all_values: set[int] = set().union(*(present for _, present, _ in results)) if labels is None else set()
    for case, (rows, _, ndim) in zip(cases, results):
        extra = all_values - {r["label_value"] for r in rows}
        rows = rows + [_absent_row(case, v, ndim, tolerance_mm) for v in extra]
        for row in sorted(rows, key=lambda r: r["label_value"]):
            acc.add_row(row)

    summary = acc.compute()
    summary["missing_predictions"] = missing
    summary["unmatched_predictions"] = unmatched
    settings = {
        "prediction": str(pred_p),
        "truth": str(truth_p),
        "labels": None if labels is None else {str(k): v for k, v in sorted(labels.items())},
        "resample": resample,
        "tolerance_mm": float(tolerance_mm),
        "grid_atol_mm": GRID_ATOL_MM,
        "surface": "boundary voxels by erosion with face connectivity (6 in 3D, 4 in 2D); image outside is background",
        "distances": "exact Euclidean distance transform with voxel spacing (mm), union bounding box + 1 voxel",
        "hd95": "max of the two directed 95th percentiles (MONAI); hd95_pooled: percentile of pooled distances (MedPy)",
        "empty_rule": "both empty: overlap metrics 1, distances 0; one empty: overlap 0, distances = image diagonal (mm), flagged",
    }
    paths = write_report(out_dir, acc.rows, summary, settings)
    return EvaluationResult(acc.rows, summary, settings, paths, missing, unmatched)
