"""Box records of the annotation schema: from a detector's output or from segmented instances.

Both kinds get the same :class:`~medannot.annotations.schema.Box` record (voxel box in array axis
order with an exclusive max corner, world RAS extent in mm, centre, score, label value and name),
numbered 1..N in the case; instance-derived boxes keep their instance id and score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Box, Instance
from medannot.data.boxes import as_boxes, inclusive_to_boxes, voxel_boxes_to_world
from medannot.data.geometry import Geometry
from medannot.errors import ModelError

__all__ = ["boxes_from_detections", "boxes_from_instance_records", "box_arrays"]


def _name(label_map: LabelMap, value: int) -> str:
    info = label_map.get(int(value))
    return info.name if info else f"label_{int(value)}"


def _records(boxes: np.ndarray, scores: Sequence[float | None], labels: Sequence[int], geometry: Geometry, label_map: LabelMap,
             source: str, instance_ids: Sequence[int | None], first_id: int = 1) -> list[Box]:
    world = voxel_boxes_to_world(boxes, geometry)
    out = []
    for k in range(len(boxes)):
        score = scores[k]
        out.append(Box(
            id=first_id + k,
            label=int(labels[k]),
            label_name=_name(label_map, labels[k]),
            score=None if score is None else round(float(score), 4),
            box_voxels=[round(float(v), 3) for v in boxes[k]],
            box_mm=[[round(float(a), 4), round(float(b), 4)] for a, b in world[k]],
            center_mm=[round(float(c), 4) for c in world[k].mean(axis=1)],
            source=source,
            instance_id=instance_ids[k],
        ))
    return out


def boxes_from_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, geometry: Geometry, label_map: LabelMap) -> list[Box]:
    """Schema records of a detector's boxes (voxel boxes on ``geometry``'s grid), in the given order.

    Raises:
        ModelError: A label value that the label map does not name (the model and its label map disagree).
    """
    b = as_boxes(boxes, geometry.ndim, "detections")
    unknown = sorted({int(v) for v in np.asarray(labels).tolist()} - set(label_map.names()))
    if unknown:
        raise ModelError(f"the detector returned class value(s) {unknown} that its label map does not name "
                         f"(known: {label_map.names()}); the bundle's labels do not match its network")
    return _records(b, [float(s) for s in scores], [int(v) for v in labels], geometry, label_map, "detector", [None] * len(b))


def boxes_from_instance_records(instances: Sequence[Instance], geometry: Geometry, label_map: LabelMap) -> list[Box]:
    """One box per segmented instance: its bounding box, score and label; ``instance_id`` links them."""
    if not instances:
        return []
    b = np.stack([inclusive_to_boxes(i.bbox_voxels) for i in instances])
    return _records(b, [i.score for i in instances], [i.label for i in instances], geometry, label_map, "instance", [i.id for i in instances])


def box_arrays(boxes: Sequence[Box], ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(voxel boxes (N, 2*ndim), scores (N,) with NaN for None, label values (N,))`` of schema records."""
    if not boxes:
        return np.zeros((0, 2 * ndim)), np.zeros(0), np.zeros(0, dtype=np.int64)
    b = np.array([x.box_voxels for x in boxes], dtype=np.float64)
    s = np.array([np.nan if x.score is None else x.score for x in boxes], dtype=np.float64)
    return b, s, np.array([x.label for x in boxes], dtype=np.int64)
