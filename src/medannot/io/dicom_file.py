"""One DICOM file: a single frame as a 2D image, a multi-frame image with positions as a 3D image, or its frames.

The pixel values follow :mod:`medannot.io._dicom_values` (palette and YCbCr colour -> RGB, MONOCHROME1 inverted
so that higher is brighter, Modality LUT; the steps done are listed in ``meta["pixel_steps"]``); the geometry
follows :mod:`medannot.io.dicom_geometry`. A file may come from disk or from memory (``bytes``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io._common import check_readable_file, parse_kind, to_label_array
from medannot.io._dicom_pixels import (
    Header,
    PixelFormat,
    check_declared_size,
    convert_identifiers,
    correct_unused_bits,
    damaged_header,
    decode_dataset,
    is_native,
    read_dataset,
    read_header,
    read_native_pixels,
)
from medannot.io._dicom_tags import frame_rescale, identifiers, refuse_mosaic, rescale_pair
from medannot.io._dicom_values import Photometric, colour_to_channels_first, grey_values, to_volume
from medannot.io.dicom_geometry import (
    Slice,
    frame_slices,
    functional_item,
    order_slices,
    pixel_spacing,
    plane_affine,
    plane_of,
    slice_thickness,
    stack_geometry,
)

__all__ = ["read_dicom_file", "read_dicom_frames"]


def open_header(source: str | Path | bytes, name: str | None, notes: list[str]) -> Header:
    """Parse the header of a file on disk (``source`` a path) or held in memory (``source`` bytes, ``name`` its name).

    Raises:
        InputError: Missing, empty or unreadable file, not DICOM, corrupt header.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = Path(name or "<bytes>")
        if not data:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", where)
        header = read_header(where, notes, data)
    else:
        p, _ = check_readable_file(source)
        header = read_header(p, notes)
    convert_identifiers(header, notes)
    return header


def _full_dataset(header: Header, notes: list[str]) -> Any:
    return read_dataset(header.path, notes, header.data)


def stored_pixels(header: Header, fmt: PixelFormat, notes: list[str]) -> tuple[np.ndarray, Any]:
    """Stored pixel values (``(frames, rows, columns[, samples])``, the frame axis dropped for one frame) and the
    dataset that describes them (the header, or the full dataset when pydicom decoded the pixels)."""
    if is_native(header, fmt):  # copied straight from the file: no second parse, no pydicom buffer
        arr = np.empty((fmt.frames, fmt.rows, fmt.columns), fmt.native_dtype())
        read_native_pixels(header, arr)
        arr = correct_unused_bits(arr, fmt)
        return (arr if fmt.frames > 1 else arr[0]), header.dataset
    ds = _full_dataset(header, notes)
    return decode_dataset(ds, header.path, notes), ds


def _spacing_2d(item: Any, where: Path, notes: list[str]) -> tuple[float, float]:
    """PixelSpacing of a 2D image (mm); 1 mm when absent or not positive (noted: a picture needs no 3D placement)."""
    try:
        sp = pixel_spacing(item, where)
    except GeometryError as exc:
        notes.append(f"{where.name}: {exc.reason}; 1 mm used")
        sp = None
    return (1.0, 1.0) if sp is None else (float(sp[0]), float(sp[1]))


def frame_values(arr: np.ndarray, ds: Any, photometric: Photometric, kind: ImageKind, rescale: tuple[float, float],
                 where: Path) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """One frame's stored values ``(rows, columns[, samples])`` -> channel-first values ``(C, rows, columns)``."""
    colour = arr.ndim == 3
    if kind is ImageKind.INTENSITY and (colour or photometric.is_palette):
        return colour_to_channels_first(arr, ds, photometric, 1, where)
    if colour:
        raise InputError(f"expected a grey label image, received {arr.shape[-1]} samples per pixel", where)
    values, steps = grey_values(arr[None], np.array([rescale[0]]), np.array([rescale[1]]), photometric, kind)
    if kind is ImageKind.LABEL:
        values = to_label_array(values, where)
    return values, steps


def _meta(ds: Any, where: Path, fmt_name: str, photometric: Photometric) -> dict[str, Any]:
    return {"source": str(where), "format": fmt_name, **identifiers(ds), "photometric": photometric.interpretation}


@damaged_header
def read_dicom_file(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read one DICOM file: single frame -> 2D image, multi-frame with positions -> 3D image.

    Args:
        path: The file, or its bytes.
        kind: ``"intensity"`` (default) or ``"label"``.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        2D image ``(C, rows, columns)`` (C = 3 for colour and palette colour) or 3D image ``(1, columns, rows,
        frames)`` in RAS mm; values as :mod:`medannot.io._dicom_values` describes (``meta["pixel_steps"]`` lists
        the steps done, ``meta["photometric"]`` the stored PhotometricInterpretation). A 2D image's spacing is
        PixelSpacing (else ImagerPixelSpacing, else 1 mm; a zero spacing is noted and replaced by 1 mm); with a
        patient position, ``meta["plane_affine_ras"]`` (4x4) maps ``(row, column, 0)`` to RAS mm.

    Raises:
        InputError: Not DICOM, no pixel data, truncated pixel data, undecodable compression, a Siemens mosaic,
            a multi-frame image without per-frame positions or in colour (read those with
            :func:`read_dicom_frames`).
        GeometryError: Inconsistent frame geometry.
    """
    kind = parse_kind(kind)
    notes: list[str] = []
    header = open_header(path, name, notes)
    p, ds = header.path, header.dataset
    refuse_mosaic(ds, p, p)
    photometric = Photometric.of(ds)
    if not (ds.get("Rows") and ds.get("Columns")):
        decode_dataset(_full_dataset(header, notes), p, notes)  # raises: no pixel data
        raise InputError("DICOM file declares no Rows/Columns; the file is probably corrupt", p)
    fmt = PixelFormat.of(ds, p)
    check_declared_size(header, fmt)  # before any pixel byte is read
    ordered: list[Slice] = []
    dz = None
    if fmt.frames > 1:  # geometry checked before decoding too
        if fmt.samples != 1 or (photometric.is_palette and kind is ImageKind.INTENSITY):
            raise InputError(
                f"multi-frame colour DICOM ({fmt.frames} frames, {photometric.interpretation or fmt.samples}) is not a 3D grey "
                "volume; read its frames as 2D images with medannot.io.read_dicom_frames",
                p,
            )
        ordered, dz = order_slices(frame_slices(ds, p, p.name), p)
        for s in ordered:
            s.slope, s.intercept = frame_rescale(ds, int(s.source), p)
    arr, described = stored_pixels(header, fmt, notes)
    meta = _meta(ds, p, "dicom", photometric)
    if ordered:
        if arr.shape != (len(ordered), *ordered[0].shape):
            raise InputError(f"decoded pixels have shape {arr.shape}, expected {(len(ordered), *ordered[0].shape)} (grey frames)", p)
        order = [int(s.source) for s in ordered]
        raw = arr if order == list(range(len(order))) else arr[order]
        vol, steps = to_volume(raw, ordered, kind, p, [photometric] * len(ordered))
        geometry = stack_geometry(ordered, dz, slice_thickness(ds), p)
        _finish_meta(meta, steps, notes)
        return Image(vol, geometry, kind, meta)
    values, steps = frame_values(arr, described, photometric, kind, rescale_pair(ds, p, 2.0**fmt.bits_stored), p)
    spacing = _spacing_2d(ds, p, notes)
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        r, c, ipp = plane_of(ds, p, p.name)
        meta["plane_affine_ras"] = plane_affine(r, c, ipp, spacing, slice_thickness(ds)).tolist()
    _finish_meta(meta, steps, notes)
    return Image(np.ascontiguousarray(values), Geometry(spacing=spacing), kind, meta)


def _finish_meta(meta: dict[str, Any], steps: list[str], notes: list[str]) -> None:
    if steps:
        meta["pixel_steps"] = steps
    if notes:
        meta["warnings"] = notes


@damaged_header
def read_dicom_frames(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> list[Image]:
    """Every frame of one DICOM file as a 2D image, with the values :func:`read_dicom_file` gives a single frame.

    No 3D grid is built, so files :func:`read_dicom_file` refuses are read too: cine loops and ultrasound clips
    (no per-frame positions), colour and palette clips, and Siemens mosaics (one picture of tiled slices).
    A single-frame file gives one image, equal to :func:`read_dicom_file`'s.

    Args:
        path: The file, or its bytes.
        kind: ``"intensity"`` (default) or ``"label"``.
        name: The file's name when ``path`` is bytes.

    Returns:
        One image ``(C, rows, columns)`` per frame, in file order; spacing from the (per-frame) PixelSpacing, else
        1 mm; ``meta["frame"]`` (0-based) and ``meta["frames"]`` say which.

    Raises:
        InputError: Not DICOM, no pixel data, truncated or undecodable pixel data.
    """
    kind = parse_kind(kind)
    notes: list[str] = []
    header = open_header(path, name, notes)
    p, ds = header.path, header.dataset
    if not (ds.get("Rows") and ds.get("Columns")):
        decode_dataset(_full_dataset(header, notes), p, notes)  # raises: no pixel data
        raise InputError("DICOM file declares no Rows/Columns; the file is probably corrupt", p)
    fmt = PixelFormat.of(ds, p)
    check_declared_size(header, fmt)
    photometric = Photometric.of(ds)
    arr, described = stored_pixels(header, fmt, notes)
    if fmt.frames == 1:
        arr = arr[None]
    if arr.shape[0] != fmt.frames:
        raise InputError(f"decoded pixels have {arr.shape[0]} frames, the header declares {fmt.frames}", p)
    out = []
    for f in range(fmt.frames):
        values, steps = frame_values(arr[f], described, photometric, kind, frame_rescale(ds, f, p), p)
        item = functional_item(ds, f, "PixelMeasuresSequence", "PixelSpacing") if fmt.frames > 1 else None
        spacing = _spacing_2d(ds if item is None else item, p, notes)
        meta = _meta(ds, p, "dicom", photometric)
        meta.update(frame=f, frames=fmt.frames)
        _finish_meta(meta, steps, list(notes))
        out.append(Image(np.ascontiguousarray(values), Geometry(spacing=spacing), kind, meta))
    return out
