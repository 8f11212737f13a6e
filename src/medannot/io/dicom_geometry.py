"""DICOM geometry in one place: where each frame lies, how frames stack into a volume, where frames fall on a grid.

Used by the reader (:mod:`medannot.io.dicom`), the DICOM SEG / RTSTRUCT writers and readers and the label
converter (:mod:`medannot.annotations`). Headers only: nothing here reads pixel data.

Conventions:

* DICOM positions and directions are patient LPS mm; medannot grids are RAS mm (:func:`lps_to_ras`,
  :data:`LPS_TO_RAS` flip x and y).
* A frame's *row cosine* is the direction of increasing column index, its *column cosine* that of increasing
  row index (ImageOrientationPatient), its normal ``row cosine x column cosine``; PixelSpacing is
  (between rows, between columns).
* A stack of frames is the 3D array ``(column, row, slice)``, slices sorted along the normal by the
  projection of ImagePositionPatient (the layout of dcm2niix and ITK).

Stacking rules (all distances in mm along the normal), applied by :func:`order_slices`:

* every frame must have the same rows x columns, orientation and PixelSpacing;
* two frames at the same position are refused (mixed acquisitions);
* a step that is a whole multiple of the others is reported as missing slices;
* uneven spacing is refused, with the spacings found: a slice may sit at most 10 % of the step (+ 0.001 mm)
  off the regular grid, so the volume's affine places every slice where the files say it is;
* a stack that drifts within the image plane by more than 0.5 degrees (and 0.05 mm) from the first slice to the last
  is a gantry tilt (or a sheared stack) and is refused: the volume would be sheared, which a NIfTI affine cannot
  represent without resampling; so is a slice shifted within its plane by more than half a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.errors import GeometryError, InputError

__all__ = [
    "slice_thickness",
    "LPS_TO_RAS",
    "FramePlane",
    "Slice",
    "frame_planes",
    "frame_slice_indices",
    "frame_slices",
    "grid_from_slice_row_column",
    "lps_to_ras",
    "normal_of",
    "order_slices",
    "pixel_spacing",
    "plane_affine",
    "plane_of",
    "series_grid",
    "stack_datasets",
    "stack_geometry",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENT_ATOL = 1e-3  # direction cosines
_SPACING_RTOL = 1e-3
_GRID_RTOL = 0.1  # a slice may sit this fraction of the step off the regular grid
_GRID_ATOL = 1e-3  # mm
_DUPLICATE_MM = 1e-3
_TILT_DEGREES = 0.5  # larger in-plane drift of the stack is a gantry tilt (or a sheared stack)
_SHIFT_ATOL = 0.05  # mm of in-plane drift ignored (positions rounded to 0.01-0.1 mm by scanners)
_POSITION_TOL_VOXELS = 0.05  # a frame may sit this far (in voxels) from a slice of the label grid
_AXIS_TOL_MM = 1e-3  # per-axis step vectors (direction x spacing) must agree to this, in mm
_MIN_SPACING_MM, _MAX_SPACING_MM = 1e-6, 1e5  # pixel sizes outside these are damaged headers, not images
_MAX_POSITION_MM = 1e7  # a position farther than 10 km from the scanner's origin is a damaged header


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Flip the sign of x and y: DICOM patient LPS mm <-> RAS mm (the same operation both ways)."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., :2] *= -1.0
    return out


# ----------------------------------------------------------------------------- header values


def floats(ds: Any, keyword: str, n: int, path: Path | None) -> np.ndarray | None:
    """``n`` finite numbers of a DS/FD attribute, ``None`` when absent or empty.

    Raises:
        InputError: Not numeric, wrong count, NaN or infinite.
    """
    value = ds.get(keyword) if ds is not None else None
    if value is None or value == "":
        return None
    try:
        items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
        arr = np.asarray([float(v) for v in items])
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is not numeric: {value!r}", path) from None
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise InputError(f"{keyword} must have {n} finite numbers, got {list(items)!r}", path)
    return arr


def number(ds: Any, keyword: str, default: float) -> float:
    """One number, ``default`` when absent, empty or not numeric."""
    value = ds.get(keyword)
    try:
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return default


def slice_thickness(ds: Any, keywords: tuple[str, ...] = ("SliceThickness",)) -> float:
    """The first of ``keywords`` that holds a usable thickness (mm): finite, positive and a size a slice can have;
    1 mm otherwise. Used only where no slice positions give the step (a single slice)."""
    for keyword in keywords:
        value = number(ds, keyword, 0.0)
        if np.isfinite(value) and _MIN_SPACING_MM <= value <= _MAX_SPACING_MM:
            return float(value)
    return 1.0


def pixel_spacing(ds: Any, path: Path | None) -> np.ndarray | None:
    """PixelSpacing (else ImagerPixelSpacing) in mm: (between rows, between columns); ``None`` when absent.

    Raises:
        GeometryError: A spacing that is not positive.
    """
    sp = floats(ds, "PixelSpacing", 2, path)
    if sp is None:
        sp = floats(ds, "ImagerPixelSpacing", 2, path)
    if sp is not None and np.any(sp <= 0):
        raise GeometryError(f"PixelSpacing must be positive, got {sp.tolist()}", path)
    if sp is not None and (np.any(sp > _MAX_SPACING_MM) or np.any(sp < _MIN_SPACING_MM)):
        raise InputError(f"PixelSpacing {sp.tolist()} mm is no pixel size (expected {_MIN_SPACING_MM:g} to {_MAX_SPACING_MM:g} mm); "
                         "the header is damaged", path)
    return sp


def position_or_none(ds: Any, path: Path | None) -> np.ndarray | None:
    """ImagePositionPatient (LPS mm), ``None`` when absent or not 3 finite numbers."""
    try:
        return floats(ds, "ImagePositionPatient", 3, path)
    except InputError:
        return None


def plane_from(iop: np.ndarray | None, ipp: np.ndarray | None, path: Path | None, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, position) in LPS, checked: two orthogonal unit vectors (to 0.01).

    Raises:
        GeometryError: Missing orientation or position, or cosines that are not orthonormal.
    """
    if iop is None or ipp is None:
        raise GeometryError(f"{where} lacks ImageOrientationPatient/ImagePositionPatient; cannot place it in 3D", path)
    r, c = iop[:3], iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(r @ c) > 1e-2:
        raise GeometryError(f"ImageOrientationPatient is not two orthogonal unit vectors: {iop.tolist()}", path)
    if np.any(np.abs(ipp) > _MAX_POSITION_MM):
        raise GeometryError(f"ImagePositionPatient {ipp.tolist()} mm is farther than {_MAX_POSITION_MM:g} mm from the origin; the header "
                            "is damaged", path)
    return r / np.linalg.norm(r), c / np.linalg.norm(c), ipp


def plane_of(ds: Any, path: Path | None, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, position) of a single-frame header, LPS, checked."""
    return plane_from(floats(ds, "ImageOrientationPatient", 6, path), floats(ds, "ImagePositionPatient", 3, path), path, where)


def plane_affine(row_cos: np.ndarray, col_cos: np.ndarray, position: np.ndarray, spacing: Sequence[float], thickness: float) -> np.ndarray:
    """RAS 4x4 mapping a single frame's array index ``(row, column, 0)`` to RAS mm.

    Args:
        row_cos, col_cos, position: The frame's plane (LPS, :func:`plane_of`).
        spacing: PixelSpacing (between rows, between columns) mm.
        thickness: Length of the third axis (SliceThickness, 1 mm when unknown).
    """
    aff = np.eye(4)
    aff[:3, 0] = col_cos * float(spacing[0])
    aff[:3, 1] = row_cos * float(spacing[1])
    aff[:3, 2] = np.cross(row_cos, col_cos) * float(thickness)
    aff[:3, 3] = position
    return LPS_TO_RAS @ aff


def functional_item(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """``sequence[0]`` holding ``keyword`` in the per-frame functional group of ``frame``, else in the shared group."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        seq = per_frame[frame].get(sequence)
        if seq and keyword in seq[0]:
            return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(sequence)
        if seq and keyword in seq[0]:
            return seq[0]
    return None


# ----------------------------------------------------------------------------- frames


@dataclass
class Slice:
    """One 2D frame placed in space (LPS mm).

    Attributes:
        position: Centre of the first pixel.
        row_cos: Direction of increasing column index.
        col_cos: Direction of increasing row index.
        spacing: (between rows, between columns) mm.
        shape: (rows, columns).
        where: File (and frame) for messages.
        source: What the caller needs to find the frame again (a frame index, a parsed header, a dataset index).
        slope, intercept: The frame's Modality LUT, carried along for the pixel reader (not geometry).
    """

    position: np.ndarray
    row_cos: np.ndarray
    col_cos: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int]
    where: str
    source: Any = None
    slope: float = 1.0
    intercept: float = 0.0


def frame_slices(ds: Any, path: Path | None, name: str) -> list[Slice]:
    """One :class:`Slice` per frame of one DICOM image header (``source`` = frame index, 0-based).

    A single-frame image with ImagePositionPatient uses its top-level plane; an enhanced multi-frame image its
    per-frame / shared functional groups (Plane Position, Plane Orientation, Pixel Measures); a multi-frame image
    with GridFrameOffsetVector (RT dose) its first frame's plane shifted along the normal.

    Args:
        ds: A pydicom dataset (the header suffices).
        path: Named in errors.
        name: Names the image in messages (e.g. the file name or the SOPInstanceUID).

    Raises:
        InputError: Not an image (no Rows/Columns), or a multi-frame image without per-frame positions
            (e.g. a cine loop or ultrasound clip).
        GeometryError: A frame lacks its position, orientation or pixel spacing, or they are invalid.
    """
    rows, cols = int(number(ds, "Rows", 0)), int(number(ds, "Columns", 0))
    if rows < 1 or cols < 1:
        raise InputError(f"{name} is not an image (Rows x Columns = {rows} x {cols})", path)
    frames = int(number(ds, "NumberOfFrames", 1)) or 1
    if frames == 1 and "ImagePositionPatient" in ds:
        r, c, ipp = plane_of(ds, path, name)
        sp = pixel_spacing(ds, path)
        if sp is None:
            raise GeometryError(f"{name} lacks PixelSpacing; cannot place it on a 3D grid", path)
        return [Slice(ipp, r, c, sp, (rows, cols), name, 0)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    grouped = functional_item(ds, 0, "PlanePositionSequence", "ImagePositionPatient") is not None
    if grouped and (frames == 1 or (per_frame and len(per_frame) == frames)):
        out = []
        for f in range(frames):
            where = name if frames == 1 else f"{name} frame {f + 1}"
            pos_item = functional_item(ds, f, "PlanePositionSequence", "ImagePositionPatient")
            ori_item = functional_item(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
            sp_item = functional_item(ds, f, "PixelMeasuresSequence", "PixelSpacing")
            if pos_item is None or ori_item is None or sp_item is None:
                raise GeometryError(f"{where} lacks its position, orientation or pixel spacing", path)
            r, c, ipp = plane_from(floats(ori_item, "ImageOrientationPatient", 6, path),
                                   floats(pos_item, "ImagePositionPatient", 3, path), path, where)  # fmt: skip
            sp = floats(sp_item, "PixelSpacing", 2, path)
            if sp is None or np.any(sp <= 0):
                raise GeometryError(f"{where} has no positive PixelSpacing", path)
            out.append(Slice(ipp, r, c, sp, (rows, cols), where, f))
        return out
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and frames > 1 and len(offsets) == frames:
        r, c, ipp = plane_of(ds, path, name)
        sp = pixel_spacing(ds, path)
        if sp is None:
            raise GeometryError(f"{name}: multi-frame DICOM lacks PixelSpacing", path)
        normal = np.cross(r, c)
        return [Slice(ipp + float(off) * normal, r, c, sp, (rows, cols), f"{name} frame {f + 1}", f) for f, off in enumerate(offsets)]
    if frames > 1:
        raise InputError(
            f"multi-frame DICOM ({frames} frames) has no per-frame positions (e.g. a cine loop or ultrasound clip); "
            "cannot build a 3D grid: extract single frames first (medannot.io.read_dicom_frames reads them as 2D images)",
            path,
        )
    raise GeometryError(f"{name} lacks ImageOrientationPatient/ImagePositionPatient; cannot place it in 3D", path)


def _check_consistent(slices: list[Slice], where: Path | None) -> None:
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


def order_slices(slices: list[Slice], where: Path | None) -> tuple[list[Slice], float | None]:
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


def stack_geometry(slices: list[Slice], dz: float | None, thickness: float, where: Path | str | None) -> Geometry:
    """Grid (RAS mm) of sorted slices; ``thickness`` (SliceThickness) is the slice step of a single slice.

    Raises:
        GeometryError: A singular affine (naming ``where``).
    """
    try:
        return Geometry.from_affine(stack_affine(slices, thickness if dz is None else dz))
    except GeometryError as exc:
        raise GeometryError(exc.reason, where) from None


# ----------------------------------------------------------------------------- source frames of DICOM outputs


@dataclass(frozen=True)
class FramePlane:
    """One source frame in DICOM patient coordinates (LPS mm), as a SEG / RTSTRUCT references it.

    Attributes:
        dataset_index: Index of the source dataset in the list given to :func:`frame_planes`.
        frame: 0-based frame number within that dataset (0 for single-frame images).
        sop_class_uid: SOPClassUID of the dataset.
        sop_instance_uid: SOPInstanceUID of the dataset.
        position: ImagePositionPatient: centre of the first pixel (LPS mm).
        row_cos: Direction of increasing column index (LPS).
        col_cos: Direction of increasing row index (LPS).
        spacing: PixelSpacing (between rows, between columns) in mm.
        shape: (rows, columns).
    """

    dataset_index: int
    frame: int
    sop_class_uid: str
    sop_instance_uid: str
    position: np.ndarray
    row_cos: np.ndarray
    col_cos: np.ndarray
    spacing: tuple[float, float]
    shape: tuple[int, int]

    def pixel_to_lps(self, rows_columns: np.ndarray) -> np.ndarray:
        """Points ``(n, 2)`` in (row, column) pixel units of this frame -> ``(n, 3)`` LPS mm."""
        rc = np.asarray(rows_columns, dtype=np.float64)
        return self.position + rc[:, :1] * (self.col_cos * self.spacing[0]) + rc[:, 1:] * (self.row_cos * self.spacing[1])


def frame_planes(datasets: Sequence[Any]) -> list[FramePlane]:
    """Every frame of the source datasets with its plane in LPS mm (:func:`frame_slices` of each).

    Args:
        datasets: pydicom datasets (headers suffice): single-frame images of one series, or one
            enhanced multi-frame image with per-frame positions.

    Returns:
        One :class:`FramePlane` per frame, in dataset order then frame order.

    Raises:
        InputError: If ``datasets`` is empty or a dataset is not an image.
        GeometryError: If a frame lacks its position, orientation or pixel spacing.
    """
    if not datasets:
        raise InputError("no source DICOM images given; the writer needs the series the labels were made on")
    planes: list[FramePlane] = []
    for d, ds in enumerate(datasets):
        name = f"source image {ds.get('SOPInstanceUID', d)}"
        for s in frame_slices(ds, None, name):
            planes.append(
                FramePlane(
                    dataset_index=d,
                    frame=int(s.source),
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                    position=s.position,
                    row_cos=s.row_cos,
                    col_cos=s.col_cos,
                    spacing=(float(s.spacing[0]), float(s.spacing[1])),
                    shape=s.shape,
                )
            )
    return planes


def frame_slice_indices(planes: Sequence[FramePlane], geometry: Geometry, spatial_shape: Sequence[int]) -> np.ndarray:
    """Slice index ``k`` of the label grid that each source frame is.

    The label grid is medannot's DICOM layout: array index ``(i, j, k)`` = (column, row, slice), RAS mm.

    Args:
        planes: Source frames (:func:`frame_planes`).
        geometry: The labels' 3D geometry.
        spatial_shape: The labels' spatial shape ``(columns, rows, slices)``.

    Returns:
        Integer array, one slice index per plane.

    Raises:
        GeometryError: If a frame's size, pixel axes or position do not match a slice of the grid.
    """
    if geometry.ndim != 3 or len(spatial_shape) != 3:
        raise GeometryError(f"DICOM outputs need 3D labels on the source series grid, got a {geometry.ndim}D grid")
    aff = geometry.affine
    ks = np.empty(len(planes), dtype=np.int64)
    for n, p in enumerate(planes):
        what = f"source image {p.sop_instance_uid}" + (f" frame {p.frame + 1}" if p.frame else "")
        if (spatial_shape[0], spatial_shape[1]) != (p.shape[1], p.shape[0]):
            raise GeometryError(
                f"labels of shape {tuple(spatial_shape)} (columns, rows, slices) do not fit {what} of "
                f"{p.shape[0]} rows x {p.shape[1]} columns; the labels must be on the source series grid"
            )
        step_i = lps_to_ras(p.row_cos * p.spacing[1])
        step_j = lps_to_ras(p.col_cos * p.spacing[0])
        if not (np.allclose(aff[:3, 0], step_i, atol=_AXIS_TOL_MM) and np.allclose(aff[:3, 1], step_j, atol=_AXIS_TOL_MM)):
            raise GeometryError(
                f"the labels' pixel axes or spacing differ from {what} (orientation/spacing of the labels "
                f"{np.round(aff[:3, :2].T, 4).tolist()} vs the source {np.round([step_i, step_j], 4).tolist()} mm); "
                "the labels must be on the source series grid"
            )
        idx = geometry.world_to_index(lps_to_ras(p.position))
        k = int(round(idx[2]))
        if np.max(np.abs(idx - [0, 0, k])) > _POSITION_TOL_VOXELS or not 0 <= k < spatial_shape[2]:
            raise GeometryError(
                f"{what} at {np.round(p.position, 3).tolist()} mm (LPS) is not a slice of the labels' grid "
                f"(it falls at voxel {np.round(idx, 3).tolist()}); the labels must be on the source series grid"
            )
        ks[n] = k
    return ks


def stack_datasets(datasets: Sequence[Any], where: Path | str | None) -> tuple[list[Any], Geometry, tuple[int, int, int]]:
    """Sort and check the frames of ``datasets`` as the series reader does.

    Returns:
        (datasets sorted along the normal (one multi-frame dataset: itself), grid in RAS mm,
        spatial shape ``(columns, rows, slices)``).

    Raises:
        InputError / GeometryError: As :func:`frame_planes` and :func:`order_slices`.
    """
    planes = frame_planes(datasets)
    several = len(planes) > len(datasets)
    slices = [Slice(p.position, p.row_cos, p.col_cos, np.asarray(p.spacing), p.shape,
                    p.sop_instance_uid + (f" frame {p.frame + 1}" if several else ""), p)
              for p in planes]  # fmt: skip
    here = None if where is None else Path(where)
    ordered, dz = order_slices(slices, here)
    thickness = slice_thickness(datasets[0])
    geometry = stack_geometry(ordered, dz, thickness, where)
    rows, cols = planes[0].shape
    if len(planes) == len(datasets):
        datasets = [datasets[s.source.dataset_index] for s in ordered]
    return list(datasets), geometry, (cols, rows, len(planes))


def series_grid(datasets: Sequence[Any]) -> tuple[Geometry, tuple[int, int, int]]:
    """Grid (RAS mm) and spatial shape ``(columns, rows, slices)`` of a series, from headers only.

    It is the grid :func:`medannot.io.read_image` gives the series' pixels.

    Raises:
        GeometryError: If the frames do not make one regular stack (see the module docstring).
    """
    _, geometry, shape = stack_datasets(datasets, "reference series")
    return geometry, shape


def grid_from_slice_row_column(array: np.ndarray, affine_lps: np.ndarray, where: Path | str | None) -> tuple[np.ndarray, Geometry]:
    """A volume indexed ``(slice, row, column)`` with its LPS affine (highdicom's layout) -> medannot's layout.

    Returns:
        The array as ``(column, row, slice)`` with slices ascending along the normal (as the series reader stacks
        them; a transposed view, flipped where needed) and its grid in RAS mm.

    Raises:
        GeometryError: A singular affine (naming ``where``).
    """
    arr = np.asarray(array)
    affine = np.asarray(affine_lps, dtype=np.float64)[:, [2, 1, 0, 3]]  # (slice,row,col) -> (col,row,slice)
    if np.dot(affine[:3, 2], np.cross(affine[:3, 0], affine[:3, 1])) < 0:  # slices ascending along the normal
        arr = arr[::-1]
        affine[:3, 3] += affine[:3, 2] * (arr.shape[0] - 1)
        affine[:3, 2] *= -1
    affine[:3] = lps_to_ras(affine[:3].T).T
    try:
        geometry = Geometry.from_affine(affine)
    except GeometryError as exc:
        raise GeometryError(exc.reason, where) from None
    return arr.transpose(2, 1, 0), geometry
