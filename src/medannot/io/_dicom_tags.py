"""Identifiers, rescale values and raw header values read from pydicom headers (used by :mod:`medannot.io.dicom`).

Geometry (positions, planes, stacking) lives in :mod:`medannot.io.dicom_geometry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medannot.errors import InputError
from medannot.io.dicom_geometry import functional_item, number

IDENTIFIERS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber")


def identifiers(ds) -> dict[str, str]:
    """The :data:`IDENTIFIERS` present in ``ds``, as text."""
    out = {}
    for key in IDENTIFIERS:
        value = ds.get(key)
        if value is not None and str(value) != "":
            out[key] = str(value)
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _rescale_value(item, keyword: str, default: float, path: Path | None) -> float:
    value = item.get(keyword) if item is not None else None
    if value is None or str(value).strip() == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is {str(value)[:30]!r}, not a number; the header is damaged", path) from None


def check_rescale(slope: float, intercept: float, stored_max: float, path: Path | None) -> None:
    """A Modality LUT that gives finite values: a slope that is finite and not 0, a finite intercept, and results
    within float32 for stored values up to ``stored_max`` in magnitude.

    Raises:
        InputError: One line with the values and what is wrong.
    """
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise InputError(f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g} are not both finite; the header is damaged", path)
    if slope == 0:
        raise InputError("RescaleSlope is 0, which maps every pixel to the same value; the header is damaged", path)
    if abs(slope) * stored_max + abs(intercept) > _FLOAT32_MAX:
        raise InputError(f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g} give values beyond float32; the header is damaged",
                         path)


def _stored_max(ds) -> float:
    try:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    except (TypeError, ValueError):
        bits = 16
    return float(2 ** min(max(bits, 1), 64))


def rescale_pair(item, path: Path | None = None, stored_max: float = 2.0**32) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept), (1, 0) when absent.

    Raises:
        InputError: A value that is not a number, not finite, a slope of 0, or results beyond float32
            (:func:`check_rescale`, stored values up to ``stored_max``).
    """
    slope, intercept = _rescale_value(item, "RescaleSlope", 1.0, path), _rescale_value(item, "RescaleIntercept", 0.0, path)
    check_rescale(slope, intercept, stored_max, path)
    return slope, intercept


def frame_rescale(ds, frame: int, path: Path | None = None) -> tuple[float, float]:
    """(slope, intercept) of one frame: the per-frame / shared Pixel Value Transformation of an enhanced image,
    else the top-level RescaleSlope/Intercept; RT dose multiplies the slope by DoseGridScaling.

    Raises:
        InputError: As :func:`rescale_pair`.
    """
    item = functional_item(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    stored_max = _stored_max(ds)
    slope, icpt = rescale_pair(item if item is not None else ds, path, stored_max)
    if "GridFrameOffsetVector" in ds and "DoseGridScaling" in ds:
        slope *= number(ds, "DoseGridScaling", 1.0)
        check_rescale(slope, icpt, stored_max, path)
    return slope, icpt


ROWS_TAG, COLUMNS_TAG, SERIES_UID_TAG, SOP_CLASS_TAG = 0x00280010, 0x00280011, 0x0020000E, 0x00080016


def refuse_mosaic(ds, path: Path, where: Path) -> None:
    """Siemens mosaics tile many slices into one image: their position and size describe the tiles, not a slice."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" in image_type:
        raise InputError(
            f"{path.name} is a Siemens mosaic (several slices tiled in one image, ImageType MOSAIC); its geometry is not "
            "that of one slice: convert it with dcm2niix first (medannot.io.read_dicom_frames reads it as one 2D picture)",
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
