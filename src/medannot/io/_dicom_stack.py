"""Sorting, checking and stacking 2D DICOM slices into a 3D volume (used by :mod:`medannot.io.dicom`).

Geometry rules (all distances in mm along the slice normal, row cosine x column cosine):

* every slice must have the same rows x columns, orientation and PixelSpacing;
* positions are sorted along the normal; two slices at the same position are refused (mixed acquisitions);
* a step that is a whole multiple of the others is reported as missing slices;
* uneven spacing is refused, with the spacings found: a slice may sit at most 10 % of the step (+ 0.001 mm)
  off the regular grid, so the volume's affine places every slice where the files say it is;
* a stack that drifts within the image plane by more than 0.5 degrees (and 0.05 mm) from the first slice to the last
  is a gantry tilt (or a sheared stack) and is refused: the volume would be sheared, which a NIfTI affine cannot
  represent without resampling; so is a slice shifted within its plane by more than half a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import GeometryError
from medannot.io._common import to_label_array

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENT_ATOL = 1e-3  # direction cosines
_SPACING_RTOL = 1e-3
_GRID_RTOL = 0.1  # a slice may sit this fraction of the step off the regular grid
_GRID_ATOL = 1e-3  # mm
_DUPLICATE_MM = 1e-3
_TILT_DEGREES = 0.5  # larger in-plane drift of the stack is a gantry tilt (or a sheared stack)
_SHIFT_ATOL = 0.05  # mm of in-plane drift ignored (positions rounded to 0.01-0.1 mm by scanners)


def apply_rescale(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """``slope * raw + intercept`` per slice of ``raw (N, ...)`` (the Modality LUT: HU for CT).

    int16 when the result is exact in int16 (computed in place, modulo 2**16, in the stored 16-bit buffer),
    otherwise float32. ``raw`` may be overwritten; the empty array is returned unchanged.
    """
    slopes = np.asarray(slopes, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    shape = (-1,) + (1,) * (raw.ndim - 1)
    identity = bool(np.all(slopes == 1) and np.all(intercepts == 0))
    if raw.size == 0 or (identity and raw.dtype.kind in "iu"):
        return raw  # stored values are already the modality values
    if raw.dtype.kind in "iu" and np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        lo, hi = float(raw.min()), float(raw.max())
        ends = np.stack([slopes * lo + intercepts, slopes * hi + intercepts])
        if ends.min() >= np.iinfo(np.int16).min and ends.max() <= np.iinfo(np.int16).max:
            # exact modulo 2**16: (s * (v mod 2**16) + i) mod 2**16 == s * v + i, which fits int16
            if raw.dtype.itemsize == 2 and raw.flags.writeable:
                work = raw.view(np.uint16)
            else:
                work = raw.astype(np.uint16)
            if np.any(slopes != 1):
                np.multiply(work, np.mod(slopes, 65536).astype(np.uint16).reshape(shape), out=work)
            if np.any(intercepts != 0):
                icpt = np.mod(intercepts, 65536).astype(np.uint16)
                np.add(work, icpt[0] if np.all(icpt == icpt[0]) else icpt.reshape(shape), out=work)
            return work.view(np.int16)
    if identity:
        return raw.astype(np.float32, copy=False)
    out = np.multiply(raw, slopes.astype(np.float32).reshape(shape), dtype=np.float32)
    out += intercepts.astype(np.float32).reshape(shape)
    return out


@dataclass
class Slice:
    """One 2D frame placed in space (LPS mm), with how to get its raw pixels.

    Attributes:
        position: LPS mm, centre of the first pixel.
        row_cos: LPS direction of increasing column index.
        col_cos: LPS direction of increasing row index.
        spacing: (between rows, between columns) mm.
        shape: (rows, columns).
        slope, intercept: Modality LUT.
        where: File (and frame) for messages.
        pixels: Returns the raw 2D frame ``(rows, columns)``; may be ``None`` when the caller reads pixels itself.
        source: What the caller needs to read the pixels (e.g. a parsed header).
    """

    position: np.ndarray
    row_cos: np.ndarray
    col_cos: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int]
    slope: float
    intercept: float
    where: str
    pixels: Callable[[], np.ndarray] | None = None
    source: Any = None


def _check_consistent(slices: list[Slice], where: Path) -> None:
    first = slices[0]
    shapes = np.array([s.shape for s in slices])
    cosines = np.array([np.r_[s.row_cos, s.col_cos] for s in slices])
    spacings = np.array([s.spacing for s in slices])
    bad_shape = np.flatnonzero(np.any(shapes != shapes[0], axis=1))
    if bad_shape.size:
        s = slices[bad_shape[0]]
        raise GeometryError(f"slices have different rows x columns: {first.shape} ({first.where}) vs {s.shape} ({s.where})", where)
    bad_orient = np.flatnonzero(np.any(np.abs(cosines - cosines[0]) > _ORIENT_ATOL, axis=1))
    if bad_orient.size:
        s = slices[bad_orient[0]]
        raise GeometryError(
            f"slices have different orientations: {cosines[0].round(4).tolist()} ({first.where}) vs "
            f"{np.r_[s.row_cos, s.col_cos].round(4).tolist()} ({s.where}); a localizer or several stacks share the series",
            where,
        )
    bad_spacing = np.flatnonzero(np.any(np.abs(spacings - spacings[0]) > _SPACING_RTOL * np.abs(spacings[0]), axis=1))
    if bad_spacing.size:
        s = slices[bad_spacing[0]]
        raise GeometryError(f"slices have different PixelSpacing: {first.spacing.tolist()} vs {s.spacing.tolist()} ({s.where})", where)


def normal_of(slice_: Slice) -> np.ndarray:
    """Slice normal (LPS): row cosine x column cosine."""
    return np.cross(slice_.row_cos, slice_.col_cos)


def describe_steps(steps: np.ndarray, limit: int = 6) -> str:
    """``"2.500 mm x 5, 3.750 mm x 1"``: the distinct steps between neighbouring slices and how often each occurs."""
    values, counts = np.unique(np.round(steps, 3), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:limit]
    text = ", ".join(f"{values[i]:.3f} mm x {counts[i]}" for i in order)
    return text + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


def order_slices(slices: list[Slice], where: Path) -> tuple[list[Slice], float | None]:
    """Check that the slices make one regular stack and sort them along the normal.

    Returns:
        The sorted slices and the step between them in mm (``None`` for a single slice).

    Raises:
        GeometryError: Mixed matrix / orientation / spacing, duplicate positions, missing slices, uneven spacing,
            gantry tilt (see the module docstring).
    """
    _check_consistent(slices, where)
    normal = normal_of(slices[0])
    dist = np.array([float(s.position @ normal) for s in slices])
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    n = len(slices)
    if n == 1:
        return slices, None
    steps = np.diff(dist)
    dup = np.flatnonzero(steps < _DUPLICATE_MM)
    if dup.size:
        a, b = slices[dup[0]], slices[dup[0] + 1]
        raise GeometryError(
            f"{dup.size} duplicate slice position(s), e.g. {dist[dup[0]]:.3f} mm along the normal in {a.where} and {b.where}; "
            "the series mixes acquisitions (echoes, time points, phases): split it first",
            where,
        )
    median = float(np.median(steps))
    ratio = steps / median
    gap = np.flatnonzero((ratio > 1.5) & (np.abs(ratio - np.round(ratio)) < 0.2))
    if gap.size:
        g = gap[0]
        missing = int(round(ratio[g])) - 1
        raise GeometryError(
            f"missing slices: gap of {steps[g]:.3f} mm between {slices[g].where} and {slices[g + 1].where} "
            f"(median step {median:.3f} mm, about {missing} slice(s) missing); add the missing files",
            where,
        )
    dz = (dist[-1] - dist[0]) / (n - 1)
    off_grid = np.abs(dist - (dist[0] + dz * np.arange(n)))
    worst = int(np.argmax(off_grid))
    if off_grid[worst] > _GRID_RTOL * dz + _GRID_ATOL:
        raise GeometryError(
            f"uneven slice spacing: steps found {describe_steps(steps)} ({slices[worst].where} sits {off_grid[worst]:.3f} mm off a "
            f"regular {dz:.3f} mm grid); medannot does not resample silently: resample the series to regular slices first",
            where,
        )
    positions = np.array([s.position for s in slices])
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)  # displacement of each slice within the image plane
    shift = np.linalg.norm(in_plane, axis=1)
    span = float(dist[-1] - dist[0])
    tilt = np.degrees(np.arctan2(shift[-1], span))
    if shift[-1] > _SHIFT_ATOL and tilt > _TILT_DEGREES:
        raise GeometryError(
            f"slices are not stacked along their normal: the last slice ({slices[-1].where}) is shifted {shift[-1]:.3f} mm "
            f"within its plane over {span:.3f} mm, a gantry tilt of about {tilt:.1f} degrees; medannot does not resample "
            "silently: correct the tilt (e.g. dcm2niix, which resamples tilted CT) first",
            where,
        )
    worst = int(np.argmax(shift))
    if shift[worst] > max(_SHIFT_ATOL, 0.5 * float(np.min(slices[0].spacing))):
        raise GeometryError(
            f"slices are shifted within their plane: {slices[worst].where} sits {shift[worst]:.3f} mm beside the first slice "
            "(more than half a pixel); the series mixes stacks or table positions: split it first",
            where,
        )
    return slices, float(dz)


def stack_affine(slices: list[Slice], dz: float) -> np.ndarray:
    """RAS affine of sorted slices stacked as ``(column, row, slice)`` with step ``dz`` mm."""
    first = slices[0]
    aff = np.eye(4)
    aff[:3, 0] = first.row_cos * first.spacing[1]
    aff[:3, 1] = first.col_cos * first.spacing[0]
    aff[:3, 2] = normal_of(first) * dz
    aff[:3, 3] = first.position
    return LPS_TO_RAS @ aff


def to_volume(raw: np.ndarray, slices: list[Slice], kind: ImageKind, where: Path) -> np.ndarray:
    """Raw frames ``(N, rows, cols)`` -> rescaled ``(1, cols, rows, N)`` (a transposed view: no copy)."""
    values = apply_rescale(raw, np.array([s.slope for s in slices]), np.array([s.intercept for s in slices]))
    if kind is ImageKind.LABEL:
        values = to_label_array(values, where)
    return values.transpose(2, 1, 0)[None]
