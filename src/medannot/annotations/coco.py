"""COCO JSON for 2D boxes: write a case's boxes, read ground truth, cross-check with pycocotools.

medannot voxel boxes are ``[row_min, col_min, row_max, col_max]`` (array axis order, max exclusive);
COCO's ``bbox`` is ``[x, y, width, height]`` with ``x`` the column and ``y`` the row of the top-left
pixel edge, so ``x = col_min, y = row_min, width = col_max - col_min, height = row_max - row_min``.
Category ids are medannot label values and category names the label names.

``boxes.coco.json`` (one per 2D case) is a complete COCO dataset (``images``, ``annotations``,
``categories``) that ``pycocotools.coco.COCO`` loads; each annotation also carries its ``score``
(omitted when the method has none), so its ``annotations`` list is accepted by ``COCO.loadRes``
as predictions.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.annotations.schema import Annotation
from medannot.data.boxes import check_boxes_inside
from medannot.errors import InputError

__all__ = ["case_coco", "coco_ground_truth", "coco_results", "from_coco_bbox", "pycocotools_eval", "read_coco_truth", "to_coco_bbox"]


def to_coco_bbox(boxes: np.ndarray) -> np.ndarray:
    """2D voxel boxes ``(N, 4)`` -> COCO ``[x, y, w, h]`` ``(N, 4)``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)


def from_coco_bbox(bbox: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` ``(N, 4)`` -> 2D voxel boxes ``(N, 4)`` (rows, then columns)."""
    b = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)


def _ann(ann_id: int, image_id: int, category: int, box: np.ndarray, score: float | None) -> dict[str, Any]:
    x, y, w, h = (round(float(v), 3) for v in to_coco_bbox(box)[0])
    out: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": int(category), "bbox": [x, y, w, h],
                           "area": round(w * h, 3), "iscrowd": 0}
    if score is not None and np.isfinite(score):
        out["score"] = round(float(score), 4)
    return out


def case_coco(annotation: Annotation, file_name: str) -> dict[str, Any]:
    """The COCO dataset of one 2D case's boxes (``boxes.coco.json``); annotation ids are the box ids.

    Raises:
        InputError: If the case is not 2D.
    """
    if annotation.ndim != 2:
        raise InputError(f"COCO boxes are 2D only; case {annotation.case!r} is {annotation.ndim}D")
    h, w = annotation.shape
    anns = [_ann(b.id, 1, b.label, np.asarray(b.box_voxels), b.score) for b in annotation.boxes]
    for a, b in zip(anns, annotation.boxes):
        a["label_name"] = b.label_name
        if b.instance_id is not None:
            a["instance_id"] = b.instance_id
    cats = [{"id": lab.value, "name": lab.name} for lab in annotation.labels if lab.value != 0]
    prov = annotation.provenance
    return {
        "info": {"description": f"boxes of {annotation.case} by {prov.source} {prov.name} {prov.version}".strip(), "version": "1.0"},
        "images": [{"id": 1, "file_name": file_name, "height": int(h), "width": int(w)}],
        "annotations": anns,
        "categories": cats,
    }


def coco_ground_truth(cases: Sequence[tuple[str, Sequence[int], np.ndarray, np.ndarray]], categories: dict[int, str]) -> dict[str, Any]:
    """A COCO ground-truth dataset from ``(file_name, (rows, cols), voxel boxes, label values)`` per image (ids 1..N)."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    used: set[int] = set(categories)
    for i, (name, shape, boxes, labels) in enumerate(cases, start=1):
        images.append({"id": i, "file_name": name, "height": int(shape[0]), "width": int(shape[1])})
        for box, lab in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1)):
            anns.append(_ann(len(anns) + 1, i, int(lab), box[None], None))
            used.add(int(lab))
    cats = [{"id": v, "name": categories.get(v, f"label_{v}")} for v in sorted(used)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_results(per_image: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """COCO detection results (``loadRes`` input) from ``(image_id, voxel boxes, scores, label values)`` per image."""
    out = []
    for image_id, boxes, scores, labels in per_image:
        for box, s, lab in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1)):
            x, y, w, h = (float(v) for v in to_coco_bbox(box[None])[0])
            out.append({"image_id": int(image_id), "category_id": int(lab), "bbox": [x, y, w, h], "score": float(s)})
    return out


def pycocotools_eval(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> list[float]:
    """pycocotools ``COCOeval`` (bbox) ``stats`` of ``results`` against ``ground_truth`` (needs pycocotools).

    Returns:
        The 12 COCO numbers (AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100, ...); with no
        result at all every number is 0.0 (pycocotools cannot load an empty result list).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return [0.0] * 12
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(ground_truth))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def read_coco_truth(path: str | Path) -> tuple[dict[str, tuple[tuple[int, int], np.ndarray, list[str]]], dict[int, str]]:
    """Read a COCO ground-truth file: per image file stem, ``((rows, cols), voxel boxes, category names)``.

    Boxes are refused (never clipped) when they reach outside their image, and annotations whose
    ``category_id`` is not among ``categories`` are refused: both give a one-line error naming the file.

    Returns:
        ``({stem: ((height, width), boxes (G, 4), names)}, {category id: name})``.

    Raises:
        InputError: Unreadable JSON, missing keys, unknown category or image ids, boxes outside the image.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable COCO JSON file ({exc})", p) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise InputError("a COCO ground-truth file needs 'images', 'annotations' and 'categories' lists", p)
    try:
        cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        images = {int(im["id"]): (str(im["file_name"]), (int(im["height"]), int(im["width"]))) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"COCO categories need id and name, images need id, file_name, height and width ({exc!r} missing or wrong)", p) from None
    per: dict[int, tuple[list[list[float]], list[str]]] = {i: ([], []) for i in images}
    for k, a in enumerate(data["annotations"]):
        try:
            img, cat, bbox = int(a["image_id"]), int(a["category_id"]), [float(v) for v in a["bbox"]]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"annotation {k}: needs image_id, category_id and bbox [x, y, w, h]", p) from None
        if cat not in cats:
            raise InputError(f"annotation {a.get('id', k)}: unknown category_id {cat}; categories are {cats}", p)
        if img not in images:
            raise InputError(f"annotation {a.get('id', k)}: image_id {img} is not among the images", p)
        if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
            raise InputError(f"annotation {a.get('id', k)}: bbox must be [x, y, width, height] with width, height >= 0, got {bbox}", p)
        per[img][0].append(bbox)
        per[img][1].append(cats[cat])
    out = {}
    for i, (name, shape) in images.items():
        boxes = from_coco_bbox(np.array(per[i][0])) if per[i][0] else np.zeros((0, 4))
        check_boxes_inside(boxes, shape, what=f"COCO image {name!r} (id {i}) ground-truth boxes", path=p)
        stem = Path(name).name.split(".")[0]
        out[stem] = (shape, boxes, per[i][1])
    return out, cats
