"""Per-label sizes and per-instance records of a label map.

Empty rule: a label value with no voxel gets ``voxels = 0``, ``size = 0.0`` and
``instance_count = 0``; it is still listed so that a missed structure is visible.
"""

from __future__ import annotations

from itertools import product

import cc3d
import numpy as np

from medannot.annotations.labelmap import LabelMap
from medannot.annotations.schema import Instance, LabelSummary
from medannot.data import Geometry


def _world_box(geometry: Geometry, lo: np.ndarray, hi: np.ndarray) -> list[list[float]]:
    corners = np.array(list(product(*[(a, b) for a, b in zip(lo, hi)])), dtype=np.float64)
    world = geometry.index_to_world(corners)
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(world.min(0), world.max(0))]


def label_instances(labels: np.ndarray, value: int) -> np.ndarray:
    """Connected components of one label value (full connectivity: 8 in 2D, 26 in 3D), uint32 ids from 1."""
    return cc3d.connected_components(labels == value, connectivity=8 if labels.ndim == 2 else 26).astype(np.uint32)


def summarise(
    labels: np.ndarray,
    geometry: Geometry,
    label_map: LabelMap,
    instance_maps: dict[int, np.ndarray] | None = None,
    probabilities: np.ndarray | None = None,
) -> tuple[list[LabelSummary], list[Instance], np.ndarray]:
    """Summarise a label map.

    Args:
        labels: Spatial integer array (2D or 3D) on ``geometry``'s grid.
        geometry: Its geometry (spacing in mm).
        label_map: Names and colours; values present in ``labels`` but not in the map are summarised too.
        instance_maps: Optional ``{label value: instance id array}`` from the model (e.g. split touching
            nuclei); other labels get connected components.
        probabilities: Optional ``(C, *spatial)`` probabilities on the same grid, used as instance scores.

    Returns:
        ``(label summaries, instances, instance id map)``; instance ids are unique in the case,
        numbered from 1 in label order, and the map (uint32 or uint16) holds them.
    """
    unit = geometry.voxel_volume
    present = [int(v) for v in np.unique(labels) if v != 0]
    values = sorted(set(label_map.names()) | set(present))
    instance_map = np.zeros(labels.shape, dtype=np.uint32)
    summaries: list[LabelSummary] = []
    records: list[Instance] = []
    next_id = 1
    for value in values:
        info = label_map.get(value)
        name = info.name if info else f"label_{value}"
        color = list(info.color) if info else [255, 255, 255]
        comp = None
        if instance_maps and value in instance_maps:
            comp = np.where(labels == value, instance_maps[value], 0)
            _, inverse = np.unique(comp, return_inverse=True)  # renumber 1..n, background stays 0
            comp = (inverse.reshape(comp.shape) + (1 if comp.min() > 0 else 0)).astype(np.uint32)
        if comp is None:
            comp = label_instances(labels, value)
        stats = cc3d.statistics(comp)
        counts = np.asarray(stats["voxel_counts"])
        boxes = stats["bounding_boxes"]
        centroids = np.asarray(stats["centroids"])
        n_inst = 0
        for cid in range(1, len(counts)):
            if counts[cid] == 0:
                continue
            sl = boxes[cid]
            lo = np.array([s.start for s in sl])
            hi = np.array([s.stop - 1 for s in sl])
            score = None
            if probabilities is not None and value < probabilities.shape[0]:
                region = comp[tuple(sl)] == cid
                score = round(float(probabilities[value][tuple(sl)][region].mean()), 4)
            instance_map[tuple(sl)][comp[tuple(sl)] == cid] = next_id
            records.append(
                Instance(
                    id=next_id,
                    label=value,
                    voxels=int(counts[cid]),
                    size=round(float(counts[cid]) * unit, 4),
                    bbox_voxels=[[int(a), int(b)] for a, b in zip(lo, hi)],
                    bbox_mm=_world_box(geometry, lo, hi),
                    centroid_mm=[round(float(c), 4) for c in geometry.index_to_world(centroids[cid])],
                    score=score,
                )
            )
            next_id += 1
            n_inst += 1
        voxels = int(counts[1:].sum())
        summaries.append(LabelSummary(value, name, color, voxels, round(voxels * unit, 4), n_inst))
    dtype = np.uint16 if next_id <= np.iinfo(np.uint16).max else np.uint32
    return summaries, records, instance_map.astype(dtype)
