"""``medannot evaluate --boxes``: score predicted boxes against reference boxes (COCO AP, AR, FROC).

Predictions
    ``annotation.json`` files written by ``medannot annotate`` (a folder of case folders, one case
    folder, or one file); every box in them counts (detector boxes and boxes of segmented instances),
    with its score (a box without a score, from a training-free method, counts with score 1).

Reference
    A COCO JSON file (2D; images matched to cases by file-name stem), or label images (a file or a
    folder, matched by case name as ``medannot evaluate`` does) read as instance maps: every distinct
    nonzero value is one object. Objects of label images carry the predictions' class when the
    predictions have one class; with several classes give a COCO file.

Classes are matched by name. Refused with a one-line message, before anything is written: reference
or predicted boxes reaching outside their image, a predicted class name the reference does not
know, grids that differ, no case in common. Metrics: :func:`medannot.evaluation.detection.average_precision`
(COCO AP@[.5:.95], AP@0.5, AP@0.75, AR@100; up to ``max_detections`` = 300 boxes per image and class count
for AP instead of COCO's 100, because one microscopy image can hold more than 100 objects) and :func:`~medannot.evaluation.detection.detection_froc`
(LUNA16-style, hit at IoU >= ``froc_iou``). Outputs ``boxes_metrics.json`` and ``boxes_metrics.csv``
are written atomically once everything is computed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medannot.data.boxes import boxes_from_instances, check_boxes_inside
from medannot.errors import GeometryError, InputError
from medannot.evaluation.detection import ClassAP, DetectionAccumulator
from medannot.evaluation.record import Record

__all__ = [
    "BoxCase",
    "BoxEvaluation",
    "BoxOverall",
    "CaseBoxes",
    "evaluate_boxes",
    "read_predicted_boxes",
    "read_truth_boxes",
]


@dataclass
class CaseBoxes:
    """Boxes of one case: voxel boxes (array axis order, max exclusive), scores, class names, image shape."""

    shape: tuple[int, ...]
    boxes: np.ndarray
    names: list[str]
    scores: np.ndarray | None = None


@dataclass(frozen=True, eq=False, repr=False)
class BoxOverall(Record):
    """Scores over all cases and classes: COCO AP@[.5:.95], AP@0.5, AP@0.75, AR@100 (None without truth), FROC, counts."""

    ap: float | None
    ap50: float | None
    ap75: float | None
    recall_at_100: float | None
    froc_score: float | None
    froc_iou: float
    froc_sensitivity_at: dict[str, float | None]
    n_truth: int
    n_predicted: int
    n_cases: int
    max_detections: int


@dataclass(frozen=True, eq=False, repr=False)
class BoxCase(Record):
    """Counts and AP@0.5 of one case (None when the case has no true box)."""

    n_truth: int
    n_predicted: int
    ap50: float | None


@dataclass(frozen=True, eq=False, repr=False)
class BoxEvaluation(Record):
    """Outcome of :func:`evaluate_boxes` (the content of ``boxes_metrics.json``).

    Attributes:
        overall: :class:`BoxOverall`.
        per_class: Class name -> AP, AP@0.5, AP@0.75, recall, counts (see
            :func:`medannot.evaluation.detection.average_precision`).
        cases: Case -> :class:`BoxCase`.
        classes: Class name -> class id used for matching.
        unmatched: ``{"predictions": [...], "reference": [...]}`` cases on one side only (not scored).
        inputs: ``{"predictions": path, "reference": path}``.
        files: ``{"json": path, "csv": path}`` written.
    """

    overall: BoxOverall
    per_class: dict[str, ClassAP]
    cases: dict[str, BoxCase]
    classes: dict[str, int]
    unmatched: dict[str, list[str]]
    inputs: dict[str, str]
    files: dict[str, str]

    def summary_line(self) -> str:
        """``"1 case, 57 true / 60 predicted boxes: AP 0.533, AP@0.5 0.907, AR@100 0.61, FROC 0.982 (IoU >= 0.1)"``."""
        o = self.overall

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        n = o.n_cases
        return (f"{n} case{'' if n == 1 else 's'}, {o.n_truth} true / {o.n_predicted} predicted boxes: AP {f(o.ap)}, "
                f"AP@0.5 {f(o.ap50)}, AP@0.75 {f(o.ap75)}, AR@100 {f(o.recall_at_100)}, FROC {f(o.froc_score)} (IoU >= {o.froc_iou})")


def _annotation_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {path.parent.name if path.name == "annotation.json" else path.stem: path}
    if (path / "annotation.json").is_file():
        return {path.name: path / "annotation.json"}
    if not path.is_dir():
        raise InputError("prediction path does not exist; give an annotate output folder or an annotation.json", path)
    found = {c.name: c / "annotation.json" for c in sorted(path.iterdir()) if not c.name.startswith(".") and (c / "annotation.json").is_file()}
    if not found:
        raise InputError("no <case>/annotation.json found; run `medannot annotate ... --out` first", path)
    return found


def read_predicted_boxes(path: str | Path) -> dict[str, CaseBoxes]:
    """Predicted boxes per case from ``annotation.json`` files (validated against the schema).

    Raises:
        InputError: Unreadable or invalid JSON, or boxes outside their image.
    """
    from medannot.annotations.schema import validate_annotation

    out = {}
    for case, file in _annotation_files(Path(path)).items():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not a readable annotation.json ({exc})", file) from None
        ann = validate_annotation(data, str(file))
        nd = ann.ndim
        boxes = np.array([b.box_voxels for b in ann.boxes], dtype=np.float64).reshape(-1, 2 * nd)
        check_boxes_inside(boxes, ann.shape, what=f"predicted boxes of case {case!r}", path=file, tolerance=1e-3)
        scores = np.array([1.0 if b.score is None else b.score for b in ann.boxes], dtype=np.float64)
        out[case] = CaseBoxes(tuple(ann.shape), boxes, [b.label_name for b in ann.boxes], scores)
    return out


def read_truth_boxes(path: str | Path) -> dict[str, CaseBoxes]:
    """Reference boxes per case from a COCO JSON file or from instance label images (see the module docstring).

    Raises:
        InputError: Unreadable files, unknown categories, boxes outside their image.
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        from medannot.annotations.coco import read_coco_truth

        per_image, _ = read_coco_truth(p)
        return {stem: CaseBoxes(shape, boxes, names) for stem, (shape, boxes, names) in per_image.items()}
    from medannot.evaluation.runner import find_label_files
    from medannot.io import read_image

    out = {}
    for case, file in find_label_files(p, "truth").items():
        img = read_image(file, kind="label")
        if img.ndim == 3 and img.spatial_shape[2] == 1:
            try:
                img = img.as_plane()
            except GeometryError:
                pass
        _, boxes = boxes_from_instances(img.array[0])
        out[case] = CaseBoxes(img.spatial_shape, boxes, [""] * len(boxes))
    return out


def _pair(preds: dict[str, CaseBoxes], truths: dict[str, CaseBoxes], pred_path: Path, truth_path: Path) -> tuple[list[str], dict[str, int]]:
    common = sorted(set(preds) & set(truths))
    if len(preds) == 1 and len(truths) == 1 and not common:
        (p_name,), (t_name,) = preds, truths
        truths[p_name] = truths.pop(t_name)
        common = [p_name]
    if not common:
        raise InputError(f"no predicted case matches a reference case by name (predictions: {', '.join(sorted(preds)[:5])}; "
                         f"reference: {', '.join(sorted(truths)[:5])})", truth_path)
    pred_names = sorted({n for c in common for n in preds[c].names})
    truth_names = sorted({n for c in common for n in truths[c].names if n})
    if not truth_names:  # label images: objects take the predictions' single class
        if len(pred_names) > 1:
            raise InputError(f"the reference label images have no class names but the predictions have {len(pred_names)} classes "
                             f"({', '.join(pred_names)}); give a COCO ground-truth file with categories", truth_path)
        name = pred_names[0] if pred_names else "object"
        for c in common:
            truths[c].names = [name] * len(truths[c].boxes)
        truth_names = [name]
    unknown = sorted(set(pred_names) - set(truth_names))
    if unknown:
        raise InputError(f"predicted class name(s) {unknown} are not in the reference (classes there: {truth_names}); "
                         "rename the labels or give the matching reference", pred_path)
    for c in common:
        if tuple(preds[c].shape) != tuple(truths[c].shape):
            raise GeometryError(f"case {c!r}: predictions are on a {list(preds[c].shape)} grid, the reference on {list(truths[c].shape)}", truth_path)
    return common, {n: i + 1 for i, n in enumerate(truth_names)}


def evaluate_boxes(pred: str | Path, truth: str | Path, out_dir: str | Path, froc_iou: float = 0.1, max_detections: int = 300) -> BoxEvaluation:
    """Score predicted boxes against reference boxes and write ``boxes_metrics.json`` / ``.csv`` into ``out_dir``.

    The detection task's evaluation entry point.

    Args:
        pred: A ``medannot annotate --out`` folder, one case folder or one ``annotation.json``.
        truth: A COCO JSON file or instance label images (see the module docstring).
        out_dir: Report folder (created).
        froc_iou: A predicted box hits a true box at IoU >= this (FROC only).
        max_detections: Boxes per image and class counted for AP (highest scores first).

    Returns:
        :class:`BoxEvaluation`: ``overall`` (ap, ap50, ap75, recall_at_100, froc score, counts), ``per_class``,
        ``cases`` (per case counts and AP@0.5), ``classes``, ``unmatched`` (cases on one side only), ``inputs``,
        ``files``.

    Raises:
        InputError / GeometryError: See the module docstring; nothing is written then.
    """
    from medannot.io.atomic import atomic_write_text

    pred_path, truth_path = Path(pred), Path(truth)
    preds, truths = read_predicted_boxes(pred_path), read_truth_boxes(truth_path)
    common, class_ids = _pair(preds, truths, pred_path, truth_path)
    acc = DetectionAccumulator(max_detections=max_detections, froc_iou=froc_iou)
    for c in common:
        p, t = preds[c], truths[c]
        acc.update(c, (p.boxes, p.scores, np.array([class_ids[n] for n in p.names], dtype=np.int64)),
                   (t.boxes, np.array([class_ids[n] for n in t.names], dtype=np.int64)))
    scores = acc.compute()
    ap, froc = scores.ap, scores.froc
    names = {v: k for k, v in class_ids.items()}
    per_class = {names[int(k)]: v for k, v in ap["per_class"].items() if int(k) in names}
    overall = BoxOverall(
        ap=ap["ap"], ap50=ap["ap50"], ap75=ap["ap75"], recall_at_100=ap["recall_at_k"].get(100), froc_score=froc.score,
        froc_iou=froc_iou, froc_sensitivity_at={str(k): v for k, v in froc.sensitivity_at.items()}, n_truth=scores.n_truth,
        n_predicted=scores.n_detections, n_cases=len(common), max_detections=max_detections,
    )
    out = Path(out_dir)
    result = BoxEvaluation(
        overall=overall,
        per_class=per_class,
        cases={c: BoxCase(n_truth=v.n_truth, n_predicted=v.n_detections, ap50=v.ap50) for c, v in scores.cases.items()},
        classes=class_ids,
        unmatched={"predictions": sorted(set(preds) - set(common)), "reference": sorted(set(truths) - set(common))},
        inputs={"predictions": str(pred_path), "reference": str(truth_path)},
        files={"json": str(out / "boxes_metrics.json"), "csv": str(out / "boxes_metrics.csv")},
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["class", "n_truth", "n_predicted", "ap", "ap50", "ap75", "recall_at_100"])
    for name, v in per_class.items():
        writer.writerow([name, v["n_truth"], v["n_detections"], v["ap"], v["ap50"], v["ap75"], v["recall"]])
    writer.writerow(["all", overall.n_truth, overall.n_predicted, overall.ap, overall.ap50, overall.ap75, overall.recall_at_100])
    atomic_write_text(out / "boxes_metrics.csv", buf.getvalue())
    atomic_write_text(out / "boxes_metrics.json", result.to_json() + "\n")
    return result
