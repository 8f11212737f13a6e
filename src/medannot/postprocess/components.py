"""Connected components: instances, largest component, small-object removal, per-instance statistics.

All functions take spatial arrays (2D or 3D, no channel axis) and never modify their input.
Connectivity is given in the cc3d convention: 4 or 8 in 2D, 6, 18 or 26 in 3D; None means
full connectivity (8 in 2D, 26 in 3D). Sizes are physical: mm^2 in 2D, mm^3 in 3D, from
``spacing`` in mm per array axis. Empty input gives empty output (no error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import cc3d
import numpy as np

from medannot.errors import ConfigError, InputError

__all__ = ["component_stats", "instances", "keep_largest_component", "remove_small_objects"]

_VALID_CONN = {2: (4, 8), 3: (6, 18, 26)}


def _check_array(labels: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"{what}: expected a 2D or 3D spatial array (no channel axis), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(f"{what}: expected an integer or boolean label array, got {arr.dtype}; round and cast first")
    return arr


def _connectivity(ndim: int, connectivity: int | None) -> Literal[4, 6, 8, 18, 26]:
    if connectivity is None:
        return 8 if ndim == 2 else 26
    if int(connectivity) not in _VALID_CONN[ndim]:
        raise ConfigError(f"connectivity for {ndim}D must be one of {_VALID_CONN[ndim]}, got {connectivity}")
    return cast(Literal[4, 6, 8, 18, 26], int(connectivity))


def _spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or min(sp) <= 0:
        raise InputError(f"spacing must be {ndim} positive values in mm, got {tuple(spacing)}")
    return sp


def instances(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask (non-zero = foreground) with cc3d.

    Args:
        mask: 2D or 3D mask (bool or integer; every non-zero value is foreground).
        connectivity: 4/8 (2D) or 6/18/26 (3D); None = 8 / 26.

    Returns:
        ``(instance_array, n)``: instance ids 1..n (uint16 or wider, chosen by cc3d) and the count.
        An empty mask gives zeros and 0.
    """
    arr = _check_array(mask, "instances")
    conn = _connectivity(arr.ndim, connectivity)
    out, n = cc3d.connected_components(arr != 0, connectivity=conn, return_N=True)
    return out, int(n)


def keep_largest_component(labels: np.ndarray, label: int, connectivity: int | None = None) -> np.ndarray:
    """Keep only the largest connected component of ``label``; its other components become 0.

    Other label values are untouched. Ties keep the component found first (lowest id).
    If ``label`` is absent the array is returned unchanged (as a copy).
    """
    arr = _check_array(labels, "keep_largest_component")
    out = arr.copy()
    sel = arr == label
    if not sel.any():
        return out
    comp, n = cc3d.connected_components(sel, connectivity=_connectivity(arr.ndim, connectivity), return_N=True)
    if n > 1:
        counts = np.bincount(comp.ravel(), minlength=n + 1)
        counts[0] = 0
        out[sel & (comp != int(np.argmax(counts)))] = 0
    return out


def remove_small_objects(
    labels: np.ndarray,
    min_size_mm: float,
    spacing: Sequence[float],
    label: int | None = None,
    connectivity: int | None = None,
) -> np.ndarray:
    """Set to 0 every connected component smaller than ``min_size_mm``.

    Components are found per label value (two touching labels are two components).

    Args:
        labels: 2D or 3D label array.
        min_size_mm: Minimum size in mm^3 (3D) or mm^2 (2D); components strictly smaller are removed.
        spacing: Voxel spacing in mm per array axis.
        label: Only consider this label value (None: every non-zero label).
        connectivity: 4/8 (2D) or 6/18/26 (3D); None = full.

    Returns:
        A new array of the same dtype; empty input gives empty output.
    """
    arr = _check_array(labels, "remove_small_objects")
    if min_size_mm < 0:
        raise ConfigError(f"remove_small_objects: min_size_mm must be >= 0 (mm^3 or mm^2), got {min_size_mm}")
    voxel = float(np.prod(_spacing(spacing, arr.ndim)))
    out = arr.copy()
    src = arr if label is None else np.where(arr == label, arr, 0)
    if not np.any(src):
        return out
    comp = cc3d.connected_components(src, connectivity=_connectivity(arr.ndim, connectivity))
    counts = np.bincount(comp.ravel())
    small = counts * voxel < min_size_mm - 1e-9 * voxel
    small[0] = False
    out[small[comp]] = 0
    return out


def component_stats(instance_array: np.ndarray, spacing: Sequence[float]) -> list[dict[str, Any]]:
    """Per-instance statistics of an instance (or label) array.

    Args:
        instance_array: 2D or 3D array of instance ids (0 = background).
        spacing: Voxel spacing in mm per axis.

    Returns:
        One dict per id present (ascending): ``id``, ``voxels`` (count), ``size_mm`` (mm^3 in 3D,
        mm^2 in 2D), ``bbox_start`` and ``bbox_stop`` (voxel indices, stop exclusive),
        ``centroid_voxel`` (float indices). An empty array gives an empty list.
    """
    arr = _check_array(instance_array, "component_stats")
    voxel = float(np.prod(_spacing(spacing, arr.ndim)))
    if not np.any(arr):
        return []
    stats = cc3d.statistics(np.ascontiguousarray(arr.astype(np.uint32, copy=False)))
    out: list[dict[str, Any]] = []
    for i, (count, box) in enumerate(zip(stats["voxel_counts"], stats["bounding_boxes"])):
        if i == 0 or count == 0 or box is None:
            continue
        out.append(
            {
                "id": i,
                "voxels": int(count),
                "size_mm": float(count) * voxel,
                "bbox_start": [int(s.start) for s in box],
                "bbox_stop": [int(s.stop) for s in box],
                "centroid_voxel": [float(c) for c in stats["centroids"][i]],
            }
        )
    return out
