"""Morphology on label maps with physical radii: hole filling, opening, closing.

Radii are in mm and become a per-axis structuring element, so anisotropic voxels get an
ellipsoidal element (every offset whose physical length is <= radius). Work is restricted
to the bounding box of the mask plus the radius, so small objects in large volumes are fast.
Empty input gives empty output. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import fill_voids
import numpy as np
from scipy import ndimage as ndi

from medannot.errors import ConfigError
from medannot.postprocess.components import _check_array, _spacing

__all__ = ["binary_close", "binary_open", "fill_holes", "structuring_element"]


def structuring_element(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean element of every voxel offset whose length in mm is <= ``radius_mm``.

    Args:
        radius_mm: Radius in mm (>= 0).
        spacing: Voxel spacing in mm per axis (2 or 3 values).

    Returns:
        An odd-sized boolean array; ``[[True]]``-like (identity) when the radius is below every spacing.
    """
    if radius_mm < 0:
        raise ConfigError(f"radius_mm must be >= 0 mm, got {radius_mm}")
    sp = np.asarray(spacing, dtype=float)
    half = np.floor(radius_mm / sp + 1e-9).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, sp)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def _box(mask: np.ndarray, pad: Sequence[int]) -> tuple[slice, ...] | None:
    if not mask.any():
        return None
    sl = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        idx = np.flatnonzero(np.any(mask, axis=other))
        sl.append(slice(max(int(idx[0]) - pad[ax], 0), min(int(idx[-1]) + 1 + pad[ax], mask.shape[ax])))
    return tuple(sl)


def _morph(mask: np.ndarray, radius_mm: float, spacing: Sequence[float], closing: bool) -> np.ndarray:
    arr = _check_array(mask, "binary_close" if closing else "binary_open").astype(bool)
    sp = _spacing(spacing, arr.ndim)
    elem = structuring_element(radius_mm, sp)
    out = arr.copy()
    if elem.size == 1:
        return out
    half = [s // 2 for s in elem.shape]
    box = _box(arr, [2 * h for h in half])
    if box is None:
        return out
    sub = arr[box]
    # The box keeps 2 radii of margin, so inside it the result equals the whole-image result.
    # As in scikit-image, erosion treats the image border as foreground (no erosion from it).
    if closing:
        res = ndi.binary_erosion(ndi.binary_dilation(sub, elem), elem, border_value=1)
    else:
        res = ndi.binary_dilation(ndi.binary_erosion(sub, elem, border_value=1), elem)
    out[box] = res
    return out


def binary_open(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Morphological opening (erosion then dilation) with a ball of ``radius_mm`` mm; removes thin parts.

    Args:
        mask: 2D or 3D mask (non-zero = foreground).
        radius_mm: Ball radius in mm.
        spacing: Voxel spacing in mm per axis.

    Returns:
        Boolean array. The image border is not treated as background.
    """
    return _morph(mask, radius_mm, spacing, closing=False)


def binary_close(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Morphological closing (dilation then erosion) with a ball of ``radius_mm`` mm; bridges small gaps.

    Args:
        mask: 2D or 3D mask (non-zero = foreground).
        radius_mm: Ball radius in mm.
        spacing: Voxel spacing in mm per axis.

    Returns:
        Boolean array. The image border is not treated as background.
    """
    return _morph(mask, radius_mm, spacing, closing=True)


def fill_binary_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background of a boolean mask: fill_voids (3D) or scipy (2D)."""
    arr = _check_array(mask, "fill_holes").astype(bool)
    if not arr.any():
        return arr
    if arr.ndim == 3:
        return fill_voids.fill(arr, in_place=False)
    return ndi.binary_fill_holes(arr)


def fill_holes(labels: np.ndarray, label: int | None = None) -> np.ndarray:
    """Fill holes (background fully enclosed by a label) with that label.

    Only background (0) voxels are filled: another label inside the hole is kept.

    Args:
        labels: 2D or 3D label array.
        label: Label value to fill; None fills every non-zero label present.

    Returns:
        A new array of the same dtype; empty input gives empty output.
    """
    arr = _check_array(labels, "fill_holes")
    out = arr.copy()
    values = np.unique(arr[arr != 0]) if label is None else [label]
    for v in values:
        sel = arr == v
        box = _box(sel, [1] * arr.ndim)
        if box is None:
            continue
        filled = fill_binary_holes(sel[box])
        sub = out[box]
        sub[filled & (sub == 0)] = v
    return out
