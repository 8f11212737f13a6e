"""Where DICOM source frames lie on a label grid, and exact moves of labels between grids.

Shared by the DICOM SEG and RTSTRUCT writers and readers. Everything here works on
geometry only (headers, affines): no pixel data is read.

* :func:`load_source_datasets` reads the headers (``stop_before_pixels``) of one DICOM series,
  sorted along the slice normal as :func:`medannot.io.read_image` stacks them.
* :func:`series_grid` gives the grid and shape of a series from its headers alone.
* :func:`frame_planes` lists every source frame (single-frame files, or the frames of an enhanced
  multi-frame file) with its position, orientation and pixel spacing in LPS mm.
* :func:`frame_slice_indices` finds the slice ``k`` of a label grid that each frame is, or raises
  :class:`GeometryError` when the labels are not on the source grid.
* :func:`onto_grid` moves a label image onto another grid that holds the same voxel centres
  (axes permuted, flipped, shifted by whole voxels): no interpolation, labels stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError

__all__ = ["FramePlane", "dcmread_object", "frame_planes", "frame_slice_indices", "load_source_datasets", "lps_to_ras", "onto_grid", "series_grid"]

_POSITION_TOL_VOXELS = 0.05  # a frame may sit this far (in voxels) from a slice of the label grid
_AXIS_TOL_MM = 1e-3  # per-axis step vectors (direction x spacing) must agree to this, in mm


def dcmread_object(path: Path, stop_before_pixels: bool = False) -> Any:
    """pydicom.dcmread for SEG / RTSTRUCT objects; files without the 128-byte preamble (older RT systems) are read too.

    Raises:
        InputError: The file cannot be parsed as DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "SOPClassUID" not in ds:
                raise InvalidDicomError("no DICM preamble and no SOP Class UID") from None
            return ds
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError) as exc:
        raise InputError(f"cannot read the DICOM file ({' '.join(str(exc).split())})", path) from None


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Flip the sign of x and y: DICOM patient LPS mm <-> RAS mm (the same operation both ways)."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., :2] *= -1.0
    return out


@dataclass(frozen=True)
class FramePlane:
    """One source frame in DICOM patient coordinates (LPS mm).

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


def _floats(item: Any, keyword: str, n: int, where: str) -> np.ndarray:
    value = item.get(keyword) if item is not None else None
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size != n or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{where}: {keyword} must hold {n} numbers, got {value!r}; cannot place the frame in 3D")
    return arr


def _functional(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """``sequence[0]`` of the per-frame group of ``frame`` holding ``keyword``, else of the shared group."""
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


def frame_planes(datasets: Sequence[Any]) -> list[FramePlane]:
    """Every frame of the source datasets with its plane in LPS mm.

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
        where = f"source image {ds.get('SOPInstanceUID', d)}"
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        if rows < 1 or cols < 1:
            raise InputError(f"{where} is not an image (Rows x Columns = {rows} x {cols})")
        frames = int(ds.get("NumberOfFrames") or 1)
        for f in range(frames):
            if "ImagePositionPatient" in ds and frames == 1:
                pos_item, ori_item, sp_item = ds, ds, ds
            else:
                pos_item = _functional(ds, f, "PlanePositionSequence", "ImagePositionPatient")
                ori_item = _functional(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
                sp_item = _functional(ds, f, "PixelMeasuresSequence", "PixelSpacing")
            fwhere = where if frames == 1 else f"{where} frame {f + 1}"
            iop = _floats(ori_item, "ImageOrientationPatient", 6, fwhere)
            planes.append(
                FramePlane(
                    dataset_index=d,
                    frame=f,
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                    position=_floats(pos_item, "ImagePositionPatient", 3, fwhere),
                    row_cos=iop[:3] / np.linalg.norm(iop[:3]),
                    col_cos=iop[3:] / np.linalg.norm(iop[3:]),
                    spacing=tuple(float(v) for v in _floats(sp_item, "PixelSpacing", 2, fwhere)),  # type: ignore[arg-type]
                    shape=(rows, cols),
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


def onto_grid(image: Image, geometry: Geometry, spatial_shape: Sequence[int], what: str = "labels") -> Image:
    """Move a label image onto a grid that holds the same voxel centres: axes permuted, flipped, shifted.

    No interpolation: every voxel keeps its value. Voxels of the target grid that the image does
    not cover are 0 (background).

    Args:
        image: Label image (3D).
        geometry: Target grid geometry (RAS mm).
        spatial_shape: Target spatial shape.
        what: Name used in messages.

    Returns:
        The labels on the target grid (same dtype, meta kept).

    Raises:
        GeometryError: If the grids do not share voxel centres (different spacing, rotation, half-voxel
            shift), or non-zero labels fall outside the target grid.
    """
    shape = tuple(int(s) for s in spatial_shape)
    if image.spatial_shape == shape and image.geometry.isclose(geometry):
        return image
    if image.ndim != geometry.ndim:
        raise GeometryError(f"{what} are {image.ndim}D, the reference grid is {geometry.ndim}D")
    m = np.linalg.inv(geometry.affine) @ image.affine
    n = image.ndim
    lin, shift = m[:n, :n], m[:n, n]
    perm_sign = np.round(lin)
    if not (np.allclose(lin, perm_sign, atol=1e-3) and np.all(np.abs(perm_sign).sum(axis=0) == 1)
            and np.all(np.abs(perm_sign).sum(axis=1) == 1) and np.allclose(shift, np.round(shift), atol=1e-2)):  # fmt: skip
        raise GeometryError(
            f"{what} ({image.geometry!r}, shape {image.spatial_shape}) are not on the reference grid ({geometry!r}, shape "
            f"{shape}) and do not share its voxel centres; resample them onto the reference first"
        )
    arr = image.array
    axes = [0] + [1 + int(np.flatnonzero(perm_sign[b])[0]) for b in range(n)]  # image axis feeding each target axis
    arr = arr.transpose(axes)
    offsets = []
    for b in range(n):
        a = axes[b + 1] - 1
        t = int(round(shift[b]))
        if perm_sign[b, a] < 0:
            arr = np.flip(arr, axis=b + 1)
            t -= arr.shape[b + 1] - 1
        offsets.append(t)
    out = np.zeros((arr.shape[0],) + shape, dtype=arr.dtype)
    src_sl, dst_sl = [slice(None)], [slice(None)]
    for b in range(n):
        lo, hi = max(0, offsets[b]), min(shape[b], offsets[b] + arr.shape[b + 1])
        if hi <= lo:
            lo = hi = 0
        dst_sl.append(slice(lo, hi))
        src_sl.append(slice(lo - offsets[b], hi - offsets[b]))
    placed = arr[tuple(src_sl)]
    if int(np.count_nonzero(placed)) != int(np.count_nonzero(arr)):
        raise GeometryError(f"{what} extend outside the reference grid (shape {shape}); they belong to another series")
    out[tuple(dst_sl)] = placed
    return Image(out, geometry, ImageKind.LABEL, dict(image.meta))


def _stack(datasets: Sequence[Any], where: Path | str) -> tuple[list[Any], Geometry, tuple[int, int, int]]:
    """Sort and check the frames of ``datasets`` as the series reader does; (sorted datasets, grid, shape)."""
    from medannot.io._dicom_stack import Slice, order_slices, stack_affine

    planes = frame_planes(datasets)
    slices = [
        Slice(p.position, p.row_cos, p.col_cos, np.asarray(p.spacing), p.shape, 1.0, 0.0,
              f"{p.sop_instance_uid}" + (f" frame {p.frame + 1}" if len(planes) > len(datasets) else ""), None, p)
        for p in planes
    ]  # fmt: skip
    ordered, dz = order_slices(slices, Path(where))
    thickness = float(datasets[0].get("SliceThickness") or 1.0) if dz is None else dz
    try:
        geometry = Geometry.from_affine(stack_affine(ordered, thickness))
    except GeometryError as exc:
        raise GeometryError(exc.reason, where) from None
    rows, cols = planes[0].shape
    if len(planes) == len(datasets):
        datasets = [datasets[s.source.dataset_index] for s in ordered]
    return list(datasets), geometry, (cols, rows, len(planes))


def series_grid(datasets: Sequence[Any]) -> tuple[Geometry, tuple[int, int, int]]:
    """Grid (RAS mm) and spatial shape ``(columns, rows, slices)`` of a series, from headers only.

    It is the grid :func:`medannot.io.read_image` gives the series' pixels.

    Raises:
        GeometryError: If the frames do not make one regular stack (see :mod:`medannot.io.dicom`).
    """
    _, geometry, shape = _stack(datasets, "reference series")
    return geometry, shape


def load_source_datasets(source: str | Path | Sequence[str | Path], series_uid: str | None = None) -> list[Any]:
    """Headers (no pixel data) of one DICOM series, sorted along the slice normal.

    The order is the one :func:`medannot.io.read_image` stacks the slices in (ascending projection of
    ImagePositionPatient on row cosine x column cosine), so dataset ``n`` is slice ``k = n`` of the image.
    An enhanced multi-frame image is returned as its single dataset.

    Args:
        source: A series folder (searched recursively) or a list of files.
        series_uid: SeriesInstanceUID to pick when the folder holds several series.

    Returns:
        pydicom datasets read with ``stop_before_pixels=True``.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``.
        GeometryError: The slices do not make one regular stack (missing, duplicate, tilted, ...).
    """
    from medannot.io.dicom import scan_dicom_folder

    scan = scan_dicom_folder(source)
    where = scan.root
    if not scan.series:
        why = "; ".join(f"{p.name}: {r}" for p, r in scan.skipped[:3])
        raise InputError(f"no DICOM image found ({len(scan.skipped)} file(s) skipped{': ' + why if why else ''})", where)
    if series_uid is None:
        if len(scan.series) > 1:
            have = "; ".join(scan.describe(u) for u in scan.series)
            raise InputError(f"folder holds {len(scan.series)} series: {have}; choose one", where)
        series_uid = next(iter(scan.series))
    if series_uid not in scan.series:
        raise InputError(f"series {series_uid} not found in the folder", where)
    datasets, _, _ = _stack([ds for _, ds in scan.series[series_uid]], where)
    return datasets
