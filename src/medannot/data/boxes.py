"""Boxes on a voxel grid and in world coordinates (2D and 3D).

Voxel boxes
    ``(N, 2 * ndim)`` float arrays in corner form ``[min_0, .., min_{n-1}, max_0, .., max_{n-1}]`` in
    **array axis order** (2D: row, column; 3D: i, j, k), continuous, max corner **exclusive**: voxel
    ``i`` spans ``[i, i + 1)``, so a box covering voxels ``i..j`` is ``[i, j + 1]``. This is MONAI's
    ``StandardMode`` and (with axes swapped) COCO's ``[x, y, w, h]`` with ``x = column``.

World boxes
    ``(N, ndim, 2)``: per world RAS axis (x, y[, z]) the ``[min, max]`` in mm of the box's corners.
    A continuous voxel coordinate ``c`` is the voxel-centre index ``c - 0.5`` mapped through the
    image affine, so the world box spans the outer edges of the covered voxels. On oblique grids the
    world box is the axis-aligned extent of the 4 (2D) or 8 (3D) mapped corners.

Empty rule: zero boxes give ``(0, 2 * ndim)`` / ``(0, ndim, 2)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry
from medannot.errors import InputError

__all__ = [
    "as_boxes",
    "box_corners",
    "boxes_from_instances",
    "check_boxes_inside",
    "clip_boxes",
    "inclusive_to_boxes",
    "map_boxes",
    "voxel_boxes_to_world",
    "world_boxes_to_voxel",
]


def as_boxes(boxes: object, ndim: int, what: str = "boxes", path: str | Path | None = None) -> np.ndarray:
    """Validate voxel boxes: shape ``(N, 2 * ndim)``, finite, max >= min.

    Raises:
        InputError: Naming ``what`` (and ``path``) and the first offending box.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2 * ndim)
    if arr.ndim != 2 or arr.shape[1] != 2 * ndim:
        raise InputError(f"{what}: expected boxes of shape (N, {2 * ndim}) [mins..., maxs...] for {ndim}D, got shape {arr.shape}", path)
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, ndim:] < arr[:, :ndim]).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{what}: box {i} {arr[i].tolist()} is not finite or has a max corner below its min corner", path)
    return arr


def box_corners(boxes: np.ndarray, ndim: int) -> np.ndarray:
    """The ``2 ** ndim`` corner points of each box, ``(N, 2 ** ndim, ndim)`` in voxel coordinates."""
    b = as_boxes(boxes, ndim)
    lo, hi = b[:, :ndim], b[:, ndim:]
    picks = np.array(list(product((0, 1), repeat=ndim)), dtype=bool)  # (2**ndim, ndim)
    return np.where(picks[None], hi[:, None, :], lo[:, None, :])


def voxel_boxes_to_world(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """World RAS mm extent ``(N, ndim, 2)`` of voxel boxes (see the module docstring)."""
    n = geometry.ndim
    corners = box_corners(boxes, n)
    if corners.shape[0] == 0:
        return np.zeros((0, n, 2))
    world = geometry.index_to_world(corners - 0.5)
    return np.stack([world.min(axis=1), world.max(axis=1)], axis=-1)


def world_boxes_to_voxel(boxes_mm: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Voxel boxes ``(N, 2 * ndim)`` covering world boxes ``(N, ndim, 2)`` (the inverse of :func:`voxel_boxes_to_world`
    on grids whose axes are parallel to the world axes; the axis-aligned extent of the mapped corners otherwise)."""
    n = geometry.ndim
    arr = np.asarray(boxes_mm, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2 * n))
    if arr.ndim != 3 or arr.shape[1:] != (n, 2):
        raise InputError(f"world boxes must have shape (N, {n}, 2) [[min, max] per axis], got {arr.shape}")
    flat = np.concatenate([arr[..., 0], arr[..., 1]], axis=1)
    corners = box_corners(flat, n)
    idx = geometry.world_to_index(corners) + 0.5
    return np.concatenate([idx.min(axis=1), idx.max(axis=1)], axis=1)


def map_boxes(boxes: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """Voxel boxes on ``source``'s grid as voxel boxes on ``target``'s grid (through world coordinates)."""
    if source.isclose(target, atol=1e-6):
        return as_boxes(boxes, source.ndim).copy()
    return world_boxes_to_voxel(voxel_boxes_to_world(boxes, source), target)


def inclusive_to_boxes(bbox_voxels: Sequence[Sequence[int]]) -> np.ndarray:
    """``[[min, max], ...]`` inclusive voxel indices per axis (``Instance.bbox_voxels``) as one voxel box row."""
    b = np.asarray(bbox_voxels, dtype=np.float64)
    return np.concatenate([b[:, 0], b[:, 1] + 1.0])


def boxes_from_instances(instances: np.ndarray, min_voxels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of every object of an instance map (each distinct nonzero value is one object).

    Args:
        instances: Integer array (2D or 3D); 0 is background.
        min_voxels: Objects with fewer voxels are left out.

    Returns:
        ``(ids (N,), boxes (N, 2 * ndim))`` sorted by id; empty arrays when there is no object.
    """
    inst = np.asarray(instances)
    nd = inst.ndim
    ids = np.unique(inst)
    ids = ids[ids != 0]
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 2 * nd))
    values, inverse = np.unique(inst, return_inverse=True)  # values[0] == 0 unless there is no background
    dense = (inverse.reshape(inst.shape) + (0 if values[0] == 0 else 1)).astype(np.int64)
    slices = ndi.find_objects(dense)
    counts = np.bincount(dense.ravel(), minlength=ids.size + 1)[1:]
    keep = counts >= min_voxels
    boxes = np.array([[s.start for s in sl] + [s.stop for s in sl] for sl in slices], dtype=np.float64)
    return ids[keep].astype(np.int64), boxes[keep]


def check_boxes_inside(boxes: np.ndarray, shape: Sequence[int], what: str = "boxes", path: str | Path | None = None,
                       tolerance: float = 1e-6) -> np.ndarray:
    """Refuse boxes that reach outside a grid of ``shape`` voxels (user-given boxes are never clipped silently).

    Raises:
        InputError: Naming the first offending box, the grid size and what to do.
    """
    nd = len(shape)
    b = as_boxes(boxes, nd, what, path)
    hi = np.asarray(shape, dtype=np.float64)
    out = (b[:, :nd] < -tolerance).any(axis=1) | (b[:, nd:] > hi + tolerance).any(axis=1)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise InputError(
            f"{what}: box {i} {np.round(b[i], 3).tolist()} lies outside the image of {list(shape)} voxels "
            f"({int(out.sum())} box(es) outside); fix the boxes or check that they belong to this image",
            path,
        )
    return b


def clip_boxes(boxes: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Clip model-made boxes to a grid of ``shape`` voxels.

    Returns:
        ``(clipped boxes, keep)``: ``keep`` marks boxes that still have a positive extent on every axis.
    """
    nd = len(shape)
    b = as_boxes(boxes, nd).copy()
    hi = np.asarray(shape, dtype=np.float64)
    b[:, :nd] = np.clip(b[:, :nd], 0.0, hi)
    b[:, nd:] = np.clip(b[:, nd:], 0.0, hi)
    keep = (b[:, nd:] - b[:, :nd] > 0).all(axis=1)
    return b, keep
