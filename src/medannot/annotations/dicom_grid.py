"""The source series of DICOM outputs, and exact moves of labels between grids.

Shared by the DICOM SEG and RTSTRUCT writers and readers and the label converter. Nothing here reads pixel data.
The geometry itself (frame planes, stacking, which slice of a label grid a frame is) lives in
:mod:`medannot.io.dicom_geometry`, the one module the reader and the writers share; its functions are
re-exported here.

* :func:`load_source_datasets` reads the headers (``stop_before_pixels``) of one DICOM series,
  chosen and sorted exactly as :func:`medannot.io.read_image` reads the series
  (:func:`medannot.io.dicom.series_headers`: the same files skipped, the same slice order).
* :func:`series_grid`, :func:`frame_planes`, :func:`frame_slice_indices`, :func:`lps_to_ras`: from
  :mod:`medannot.io.dicom_geometry`.
* :func:`onto_grid` moves a label image onto another grid that holds the same voxel centres
  (axes permuted, flipped, shifted by whole voxels): no interpolation, labels stay exact.
* :func:`dcmread_object` reads SEG / RTSTRUCT objects (also without the DICM preamble).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io.dicom import series_headers
from medannot.io.dicom_geometry import FramePlane, frame_planes, frame_slice_indices, lps_to_ras, series_grid

__all__ = ["FramePlane", "dcmread_object", "frame_planes", "frame_slice_indices", "load_source_datasets", "lps_to_ras", "onto_grid", "series_grid"]


def dcmread_object(path: Path, stop_before_pixels: bool = False) -> Any:
    """pydicom.dcmread for SEG / RTSTRUCT objects; files without the 128-byte preamble (older RT systems) are read too.

    Raises:
        InputError: The file cannot be parsed as DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
            if "SOPClassUID" not in ds:
                raise InvalidDicomError("no DICM preamble and no SOP Class UID") from None
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError) as exc:
        raise InputError(f"cannot read the DICOM file ({' '.join(str(exc).split())})", path) from None
    _convert_quietly(ds)
    return ds


def _convert_quietly(ds: Any) -> None:
    """Convert every value now with pydicom's notes about odd values silenced: the checks that follow
    (:mod:`medannot.annotations.dicom_read_checks`) refuse a damaged value that matters with one line naming the
    file; a value pydicom cannot convert at all is left as read, for those checks to meet."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack = [ds]
        while stack:
            item = stack.pop()
            for tag in list(item.keys()):
                try:
                    elem = item[tag]
                except Exception:  # noqa: BLE001, S112 - left raw: the checks (or the reader) name what is wrong
                    continue
                if elem.VR == "SQ":
                    stack.extend(elem.value)


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


def load_source_datasets(source: str | Path | Sequence[str | Path], series_uid: str | None = None) -> list[Any]:
    """Headers (no pixel data) of one DICOM series, sorted along the slice normal.

    The files and their order are those :func:`medannot.io.read_image` reads (both call the same code:
    :func:`medannot.io.dicom.series_headers`): dataset ``n`` is slice ``k = n`` of the image, and a damaged file
    the reader skips is left out here too. An enhanced multi-frame image is returned as its single dataset.

    Args:
        source: A series folder (searched recursively) or a list of files.
        series_uid: SeriesInstanceUID to pick when the folder holds several series.

    Returns:
        pydicom datasets read with ``stop_before_pixels=True``.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``.
        GeometryError: The slices do not make one regular stack (missing, duplicate, tilted, ...).
    """
    return series_headers(source, series_uid)
