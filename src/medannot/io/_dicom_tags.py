"""Numbers, planes and per-frame geometry read from pydicom headers (used by :mod:`medannot.io.dicom`).

Positions and directions are DICOM LPS mm; every problem is an :class:`InputError` / :class:`GeometryError`
naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import GeometryError, InputError
from medannot.io._dicom_stack import Slice

IDENTIFIERS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber")


def floats(ds, keyword: str, n: int, path: Path) -> np.ndarray | None:
    """``n`` finite numbers of a DS/FD attribute, ``None`` when absent or empty.

    Raises:
        InputError: Not numeric, wrong count, NaN or infinite.
    """
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
        arr = np.asarray([float(v) for v in items])
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is not numeric: {value!r}", path) from None
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise InputError(f"{keyword} must have {n} finite numbers, got {list(value)!r}", path)
    return arr


def number(ds, keyword: str, default: float) -> float:
    """One number, ``default`` when absent, empty or not numeric."""
    value = ds.get(keyword)
    try:
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return default


def pixel_spacing(ds, path: Path) -> np.ndarray | None:
    """PixelSpacing (else ImagerPixelSpacing) in mm: (between rows, between columns); ``None`` when absent.

    Raises:
        GeometryError: A spacing that is not positive.
    """
    sp = floats(ds, "PixelSpacing", 2, path)
    if sp is None:
        sp = floats(ds, "ImagerPixelSpacing", 2, path)
    if sp is not None and np.any(sp <= 0):
        raise GeometryError(f"PixelSpacing must be positive, got {sp.tolist()}", path)
    return sp


def identifiers(ds) -> dict[str, str]:
    """The :data:`IDENTIFIERS` present in ``ds``, as text."""
    out = {}
    for key in IDENTIFIERS:
        value = ds.get(key)
        if value is not None and str(value) != "":
            out[key] = str(value)
    return out


def rescale_pair(item) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept), (1, 0) when absent."""
    return number(item, "RescaleSlope", 1.0), number(item, "RescaleIntercept", 0.0)


def plane_from(iop: np.ndarray | None, ipp: np.ndarray | None, path: Path, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, position) in LPS, checked."""
    if iop is None or ipp is None:
        raise GeometryError(f"{where} lacks ImageOrientationPatient/ImagePositionPatient; cannot place it in 3D", path)
    r, c = iop[:3], iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(r @ c) > 1e-2:
        raise GeometryError(f"ImageOrientationPatient is not two orthogonal unit vectors: {iop.tolist()}", path)
    return r / np.linalg.norm(r), c / np.linalg.norm(c), ipp


def plane_of(ds, path: Path, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, position) of a single-frame header, LPS, checked."""
    return plane_from(floats(ds, "ImageOrientationPatient", 6, path), floats(ds, "ImagePositionPatient", 3, path), path, where)


def frame_item(ds, frame: int, sequence: str, keyword: str):
    """Look ``sequence[0].keyword`` up in the per-frame group of ``frame`` then in the shared group."""
    for groups in (ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence")):
        if not groups:
            continue
        group = groups[frame] if groups is ds.get("PerFrameFunctionalGroupsSequence") else groups[0]
        seq = group.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0]
    return None


def multiframe_slices(ds, path: Path, frames: int, shape: tuple[int, int]) -> list[Slice]:
    """One :class:`Slice` per frame (``source`` = frame index) from the header alone: per-frame / shared functional
    groups (enhanced MR/CT/PET...) or GridFrameOffsetVector (RT dose).

    Raises:
        InputError: No per-frame positions (cine, ultrasound clip).
        GeometryError: A frame lacks its position, orientation or pixel spacing.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    slices: list[Slice] = []
    if per_frame and len(per_frame) == frames and frame_item(ds, 0, "PlanePositionSequence", "ImagePositionPatient"):
        for f in range(frames):
            pos_item = frame_item(ds, f, "PlanePositionSequence", "ImagePositionPatient")
            ori_item = frame_item(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
            sp_item = frame_item(ds, f, "PixelMeasuresSequence", "PixelSpacing")
            if pos_item is None or ori_item is None or sp_item is None:
                raise GeometryError(f"frame {f + 1} lacks its position, orientation or pixel spacing", path)
            iop = floats(ori_item, "ImageOrientationPatient", 6, path)
            r, c, ipp = plane_from(iop, floats(pos_item, "ImagePositionPatient", 3, path), path, f"frame {f + 1}")
            resc = frame_item(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
            slope, icpt = rescale_pair(resc) if resc is not None else rescale_pair(ds)
            sp = floats(sp_item, "PixelSpacing", 2, path)
            if sp is None or np.any(sp <= 0):
                raise GeometryError(f"frame {f + 1} has no positive PixelSpacing", path)
            slices.append(Slice(ipp, r, c, sp, shape, slope, icpt, f"{path.name} frame {f + 1}", source=f))
        return slices
    offsets = ds.get("GridFrameOffsetVector")
    if offsets is not None and len(offsets) == frames:
        r, c, ipp = plane_of(ds, path, path.name)
        sp = pixel_spacing(ds, path)
        if sp is None:
            raise GeometryError("multi-frame DICOM lacks PixelSpacing", path)
        normal = np.cross(r, c)
        slope, icpt = number(ds, "DoseGridScaling", 1.0) * rescale_pair(ds)[0], rescale_pair(ds)[1]
        for f, off in enumerate(offsets):
            slices.append(Slice(ipp + float(off) * normal, r, c, sp, shape, slope, icpt, f"{path.name} frame {f + 1}", source=f))
        return slices
    raise InputError(
        f"multi-frame DICOM ({frames} frames) has no per-frame positions (e.g. a cine loop or ultrasound clip); "
        "cannot build a 3D grid: extract single frames first",
        path,
    )


ROWS_TAG, COLUMNS_TAG, SERIES_UID_TAG, SOP_CLASS_TAG = 0x00280010, 0x00280011, 0x0020000E, 0x00080016


def refuse_mosaic(ds, path: Path, where: Path) -> None:
    """Siemens mosaics tile many slices into one image: their position and size describe the tiles, not a slice."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" in image_type:
        raise InputError(
            f"{path.name} is a Siemens mosaic (several slices tiled in one image, ImageType MOSAIC); its geometry is not "
            "that of one slice: convert it with dcm2niix first",
            where,
        )


def raw_text(ds, tag: int, keyword: str) -> str:
    """A text attribute (UI, CS...) from its raw bytes when not yet converted (no pydicom conversion or warning)."""
    raw = raw_value(ds, tag)
    return raw.decode("ascii", "replace").strip(" \x00") if isinstance(raw, bytes) else str(ds.get(keyword, "") or "")


def series_uid(ds) -> str:
    """SeriesInstanceUID, ``"unknown-series"`` when absent or empty."""
    return raw_text(ds, SERIES_UID_TAG, "SeriesInstanceUID") or "unknown-series"


# Attributes that are usually identical across a series: when a file's raw bytes for all of them equal those of a
# file already converted, its slice reuses that conversion and only ImagePositionPatient is parsed (pydicom's value
# conversion dominates header reading otherwise).
SERIES_CONSTANT_TAGS = (
    0x00280010, 0x00280011, 0x00280008, 0x00280002, 0x00200037, 0x00280030, 0x00181164,
    0x00280100, 0x00280101, 0x00280103, 0x00281053, 0x00281052, 0x00080008,
)  # fmt: skip
IMAGE_POSITION_TAG = 0x00200032


def raw_value(ds, tag: int) -> Any:
    """An element's stored bytes without pydicom's value conversion (``repr`` of the value once converted)."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    value = elem.value
    return value if isinstance(value, (bytes, type(None))) else repr(value)


def constants_signature(ds) -> tuple:
    """Transfer syntax and raw bytes of :data:`SERIES_CONSTANT_TAGS`: equal signatures give equal slice layouts."""
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    return (str(ts), *(raw_value(ds, tag) for tag in SERIES_CONSTANT_TAGS))


def raw_position(ds) -> np.ndarray | None:
    """ImagePositionPatient parsed from its raw DS text (3 finite numbers), ``None`` when that is not possible."""
    raw = raw_value(ds, IMAGE_POSITION_TAG)
    if not isinstance(raw, bytes):
        return None
    try:
        values = np.array([float(v) for v in raw.decode("ascii").strip(" \x00").split("\\")])
    except (UnicodeDecodeError, ValueError):
        return None
    return values if values.size == 3 and np.all(np.isfinite(values)) else None


def position_or_none(ds, path: Path) -> np.ndarray | None:
    """ImagePositionPatient (LPS mm), ``None`` when absent or not 3 finite numbers."""
    try:
        return floats(ds, "ImagePositionPatient", 3, path)
    except InputError:
        return None
