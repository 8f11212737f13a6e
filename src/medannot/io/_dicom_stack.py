"""Sorting, checking and stacking 2D DICOM slices into a 3D volume (used by :mod:`medannot.io.dicom`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io._common import check_allocation, to_label_array

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENT_ATOL = 1e-3  # direction cosines
_SPACING_RTOL = 1e-3


def apply_rescale(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """raw (N, ...) -> slope * raw + intercept per slice; int16 when exact, else float32 (HU for CT)."""
    shape = (-1,) + (1,) * (raw.ndim - 1)
    identity = np.all(slopes == 1) and np.all(intercepts == 0)
    if identity and raw.dtype.kind in "iu":
        return raw  # stored values are already the modality values
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if integral and raw.dtype.kind in "iu":
        lo = float(raw.min()) if raw.size else 0.0
        hi = float(raw.max()) if raw.size else 0.0
        ends = np.stack([slopes * lo + intercepts, slopes * hi + intercepts])
        if ends.min() >= np.iinfo(np.int16).min and ends.max() <= np.iinfo(np.int16).max:
            out = raw.astype(np.int32) * slopes.astype(np.int32).reshape(shape) + intercepts.astype(np.int32).reshape(shape)
            return out.astype(np.int16)
    if identity and raw.dtype.kind == "f":
        return raw.astype(np.float32)
    out = raw.astype(np.float32) * slopes.astype(np.float32).reshape(shape)
    out += intercepts.astype(np.float32).reshape(shape)
    return out


@dataclass
class Slice:
    position: np.ndarray  # LPS mm, centre of the first pixel
    row_cos: np.ndarray  # LPS direction of increasing column index
    col_cos: np.ndarray  # LPS direction of increasing row index
    spacing: np.ndarray  # (between rows, between columns) mm
    shape: tuple[int, int]  # (rows, columns)
    slope: float
    intercept: float
    where: str  # file (and frame) for messages
    pixels: Callable[[], np.ndarray]  # raw 2D (rows, columns)


def _check_consistent(slices: list[Slice], where: Path) -> None:
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape:
            raise GeometryError(f"slices have different rows x columns: {first.shape} ({first.where}) vs {s.shape} ({s.where})", where)
        if not (np.allclose(s.row_cos, first.row_cos, atol=_ORIENT_ATOL) and np.allclose(s.col_cos, first.col_cos, atol=_ORIENT_ATOL)):
            raise GeometryError(
                f"slices have different orientations: {np.r_[first.row_cos, first.col_cos].round(4).tolist()} ({first.where}) vs "
                f"{np.r_[s.row_cos, s.col_cos].round(4).tolist()} ({s.where}); a localizer or several stacks share the series",
                where,
            )
        if not np.allclose(s.spacing, first.spacing, rtol=_SPACING_RTOL, atol=0):
            raise GeometryError(f"slices have different PixelSpacing: {first.spacing.tolist()} vs {s.spacing.tolist()} ({s.where})", where)


def assemble(slices: list[Slice], kind: ImageKind, where: Path, default_thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Sort, check and stack slices; returns (array (1, cols, rows, N), RAS affine)."""
    _check_consistent(slices, where)
    first = slices[0]
    normal = np.cross(first.row_cos, first.col_cos)
    dist = np.array([float(s.position @ normal) for s in slices])
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist = dist[order]
    n = len(slices)
    if n > 1:
        steps = np.diff(dist)
        dup = np.flatnonzero(steps < 1e-3)
        if dup.size:
            a, b = slices[dup[0]], slices[dup[0] + 1]
            raise GeometryError(
                f"{dup.size} duplicate slice position(s), e.g. {dist[dup[0]]:.3f} mm along the normal in {a.where} and {b.where}; "
                "the series mixes acquisitions (echoes, time points, phases): split it first",
                where,
            )
        median = float(np.median(steps))
        gap = np.flatnonzero(steps > 1.5 * median)
        if gap.size:
            g = gap[0]
            missing = int(round(steps[g] / median)) - 1
            raise GeometryError(
                f"missing slices: gap of {steps[g]:.3f} mm between {slices[g].where} and {slices[g + 1].where} "
                f"(median step {median:.3f} mm, about {missing} slice(s) missing); add the missing files",
                where,
            )
        if np.any(np.abs(steps - median) > 0.2 * median):
            raise GeometryError(
                f"irregular slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm (median {median:.3f}); "
                "resample the series to regular slices first",
                where,
            )
        for a, b in zip(slices[:-1], slices[1:]):
            delta = b.position - a.position
            lateral = delta - (delta @ normal) * normal
            if np.linalg.norm(lateral) > 1e-3 + 0.01 * abs(delta @ normal):
                tilt = np.degrees(np.arctan2(np.linalg.norm(lateral), abs(delta @ normal)))
                raise GeometryError(
                    f"slices are not stacked along their normal (offset {np.linalg.norm(lateral):.3f} mm per slice, "
                    f"gantry tilt about {tilt:.1f} degrees, at {b.where}); correct the tilt (e.g. dcm2niix) first",
                    where,
                )
        dz = (dist[-1] - dist[0]) / (n - 1)
    else:
        dz = default_thickness
    rows, cols = first.shape
    check_allocation(where, rows * cols * n * 4, "DICOM volume")
    raw = None
    for k, s in enumerate(slices):
        px = s.pixels()
        if px.shape != (rows, cols):
            raise InputError(f"{s.where}: decoded pixels have shape {px.shape}, expected {(rows, cols)} (one grey frame)", where)
        if raw is None:
            raw = np.empty((n, rows, cols), dtype=px.dtype)
        raw[k] = px
    values = apply_rescale(raw, np.array([s.slope for s in slices]), np.array([s.intercept for s in slices]))
    if kind is ImageKind.LABEL:
        values = to_label_array(values, where)
    arr = np.ascontiguousarray(values.transpose(2, 1, 0))[None]
    aff = np.eye(4)
    aff[:3, 0] = first.row_cos * first.spacing[1]
    aff[:3, 1] = first.col_cos * first.spacing[0]
    aff[:3, 2] = normal * dz
    aff[:3, 3] = slices[0].position
    return arr, LPS_TO_RAS @ aff
