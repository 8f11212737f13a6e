"""Checks a DICOM SEG or RTSTRUCT must pass before it is read: damaged objects are refused with one line.

highdicom and the contour rasteriser assume well-formed objects: a NaN frame position makes highdicom's frame
table fail deep inside SQLite, a ContourData of 5 values or a missing ReferencedROINumber fails as a reshape or
attribute error. Everything here looks at the header only (nothing is decoded) and raises
:class:`~medannot.errors.InputError` / :class:`~medannot.errors.GeometryError` naming the file and what to do:

* :func:`check_seg` -- segments numbered, frames counted, pixel data of the declared size, every frame's
  position, orientation and pixel spacing finite (and the orientation orthonormal), frame segment references known.
* :func:`check_rtstruct` -- ROI numbers are integers, every contour names a known ROI, ContourData holds triples
  of finite numbers.
* :func:`check_same_series` -- a SEG or RTSTRUCT made on another series (other SeriesInstanceUID or frame of
  reference) is not put on the reference series' voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medannot.errors import GeometryError, InputError

__all__ = ["check_rtstruct", "check_same_series", "check_seg"]

_MAX_FRAMES = 1_000_000


def _int(value: Any, what: str, path: Path) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise InputError(f"{what} is {str(value)[:40]!r}, not a whole number; the file is damaged", path) from None
    return number


def _numbers(value: Any, n: int | None, what: str, path: Path) -> list[float]:
    """Finite numbers of a DS/FD attribute (``n`` of them when given)."""
    if value is None:
        raise InputError(f"{what} is missing; the file is damaged", path)
    items = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"{what} holds values that are not numbers ({str(items[:3])[:60]}); the file is damaged", path) from None
    if n is not None and len(numbers) != n:
        raise InputError(f"{what} holds {len(numbers)} values, expected {n}; the file is damaged", path)
    if not all(math.isfinite(v) for v in numbers):
        raise GeometryError(f"{what} holds values that are not finite ({', '.join(f'{v:g}' for v in numbers[:6])}); the file is damaged",
                            path)
    return numbers


def _functional(ds: Any, frame_item: Any, sequence: str) -> Any:
    """The first item of a functional group ``sequence`` for one frame: per-frame, else shared (None when absent)."""
    for holder in (frame_item, *(ds.get("SharedFunctionalGroupsSequence") or [])[:1]):
        if holder is not None and sequence in holder and len(holder[sequence].value or []) > 0:
            return holder[sequence].value[0]
    return None


def _orientation(values: list[float], what: str, path: Path) -> None:
    r, c = values[:3], values[3:]
    norm_r, norm_c = math.sqrt(sum(v * v for v in r)), math.sqrt(sum(v * v for v in c))
    dot = sum(a * b for a, b in zip(r, c))
    if abs(norm_r - 1) > 1e-2 or abs(norm_c - 1) > 1e-2 or abs(dot) > 1e-2:
        raise GeometryError(f"{what} is not two orthogonal unit vectors ({', '.join(f'{v:g}' for v in values)}); the file is damaged",
                            path)


def check_seg(ds: Any, path: Path) -> None:
    """Refuse a DICOM SEG whose header cannot describe its frames (see the module docstring).

    Raises:
        InputError: Missing or misnumbered segments, a frame count or pixel data that disagree, a frame of an
            unknown segment.
        GeometryError: A frame position, orientation or pixel spacing that is missing, not finite or not a plane.
    """
    segments = ds.get("SegmentSequence")
    if not segments:
        raise InputError("DICOM SEG without a SegmentSequence (no segment is described); the file is damaged", path)
    numbers = [_int(item.get("SegmentNumber"), "a SegmentNumber", path) for item in segments]
    if len(set(numbers)) != len(numbers) or min(numbers) < 1:
        raise InputError(f"DICOM SEG numbers its segments {numbers[:10]}; expected distinct numbers from 1", path)
    frames = _int(ds.get("NumberOfFrames", 1), "NumberOfFrames", path)
    rows, cols = _int(ds.get("Rows"), "Rows", path), _int(ds.get("Columns"), "Columns", path)
    bits = _int(ds.get("BitsAllocated", 1), "BitsAllocated", path)
    if not (1 <= frames <= _MAX_FRAMES and rows >= 1 and cols >= 1 and bits in (1, 8, 16)):
        raise InputError(f"DICOM SEG declares {frames} frames of {rows} x {cols} pixels at {bits} bits; the header is damaged", path)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames:
        raise InputError(f"DICOM SEG declares {frames} frames but describes {len(per_frame)}; the file is damaged", path)
    if "PixelData" in ds:
        needed = (rows * cols * frames * bits + 7) // 8
        stored = len(ds.PixelData)
        if stored < needed:
            raise InputError(f"DICOM SEG pixel data hold {stored} bytes, {frames} frames of {rows} x {cols} need {needed}; "
                             "the file is truncated", path)
        if stored > needed + 1 + (needed % 2):
            raise InputError(f"DICOM SEG pixel data hold {stored} bytes, {frames} frames of {rows} x {cols} need {needed}; "
                             "the header does not describe them", path)
    else:
        raise InputError("DICOM SEG without pixel data; the file is truncated", path)
    known = set(numbers)
    for index, item in enumerate(per_frame):
        where = f"frame {index + 1}"
        plane = _functional(ds, item, "PlanePositionSequence")
        if plane is not None or "FrameOfReferenceUID" in ds:
            _numbers(None if plane is None else plane.get("ImagePositionPatient"), 3, f"the ImagePositionPatient of {where}", path)
        orient = _functional(ds, item, "PlaneOrientationSequence")
        if orient is not None:
            _orientation(_numbers(orient.get("ImageOrientationPatient"), 6, f"the ImageOrientationPatient of {where}", path),
                         f"the ImageOrientationPatient of {where}", path)
        measures = _functional(ds, item, "PixelMeasuresSequence")
        if measures is not None and "PixelSpacing" in measures:
            spacing = _numbers(measures.get("PixelSpacing"), 2, f"the PixelSpacing of {where}", path)
            if min(spacing) <= 0:
                raise GeometryError(f"the PixelSpacing of {where} is {spacing}; expected positive mm", path)
        ident = _functional(ds, item, "SegmentIdentificationSequence")
        if ident is None:
            raise InputError(f"{where} names no segment (SegmentIdentificationSequence); the file is damaged", path)
        number = _int(ident.get("ReferencedSegmentNumber"), f"the ReferencedSegmentNumber of {where}", path)
        if number not in known:
            raise InputError(f"{where} belongs to segment {number}, which the SegmentSequence does not describe (segments "
                             f"{sorted(known)[:10]}); the file is damaged", path)


def check_rtstruct(ds: Any, path: Path) -> None:
    """Refuse an RTSTRUCT whose ROIs or contours cannot be rasterised (see the module docstring).

    Raises:
        InputError: A ROI number that is not an integer, a contour of an unknown or unnamed ROI, ContourData that is
            not triples of numbers.
        GeometryError: Contour coordinates that are not finite.
    """
    rois = ds.get("StructureSetROISequence") or []
    numbers = {_int(roi.get("ROINumber"), "a ROINumber", path) for roi in rois}
    for index, item in enumerate(ds.get("ROIContourSequence") or []):
        if "ReferencedROINumber" not in item:
            raise InputError(f"contour set {index + 1} (ROIContourSequence) names no ROI (ReferencedROINumber missing); the file is damaged",
                             path)
        number = _int(item.ReferencedROINumber, f"the ReferencedROINumber of contour set {index + 1}", path)
        if number not in numbers:
            raise InputError(f"contour set {index + 1} belongs to ROI {number}, which the StructureSetROISequence does not list "
                             f"(ROIs {sorted(numbers)[:10]}); the file is damaged", path)
        for k, contour in enumerate(item.get("ContourSequence") or []):
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            data = contour.get("ContourData")
            if data is None or (hasattr(data, "__len__") and len(data) == 0):
                continue  # an empty contour outlines nothing
            values = _numbers(data, None, f"the ContourData of contour {k + 1} of ROI {number}", path)
            if len(values) % 3:
                raise InputError(f"the ContourData of contour {k + 1} of ROI {number} holds {len(values)} values, not (x, y, z) "
                                 "triples; the file is damaged", path)


def check_same_series(ds: Any, reference: Sequence[Any], path: Path, what: str) -> None:
    """Refuse labels made on another series than ``reference`` (headers of the series they are to be put on).

    Compares the frame of reference, and the series the object says it references (SEG ReferencedSeriesSequence,
    RTSTRUCT RTReferencedSeriesSequence) when it says so.

    Raises:
        InputError: The object belongs to another series; the message names both.
    """
    if not reference:
        return
    ref_series = {str(d.get("SeriesInstanceUID", "")) for d in reference} - {""}
    ref_frames = {str(d.get("FrameOfReferenceUID", "")) for d in reference} - {""}
    series = {str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence") or []}
    frames = {str(ds.get("FrameOfReferenceUID", ""))}
    for ref in ds.get("ReferencedFrameOfReferenceSequence") or []:
        frames.add(str(ref.get("FrameOfReferenceUID", "")))
        for study in ref.get("RTReferencedStudySequence") or []:
            series.update(str(s.get("SeriesInstanceUID", "")) for s in study.get("RTReferencedSeriesSequence") or [])
    series.discard("")
    frames.discard("")
    if series and ref_series and not series & ref_series:
        raise InputError(f"this {what} was made on series {sorted(series)[0]}, not on the reference series {sorted(ref_series)[0]}; "
                         "give --reference the series it belongs to", path)
    if frames and ref_frames and not frames & ref_frames:
        raise InputError(f"this {what} is in frame of reference {sorted(frames)[0]}, the reference series in "
                         f"{sorted(ref_frames)[0]}; give --reference the series it belongs to", path)
    if not ref_frames:
        return
    for ref in ds.get("ReferencedFrameOfReferenceSequence") or []:  # RTSTRUCT: the frame it says each series is in
        frame = str(ref.get("FrameOfReferenceUID", ""))
        listed = {str(s.get("SeriesInstanceUID", "")) for study in ref.get("RTReferencedStudySequence") or []
                  for s in study.get("RTReferencedSeriesSequence") or []}
        if frame and frame not in ref_frames and listed & ref_series:
            raise InputError(f"this {what} puts the reference series in frame of reference {frame}, the series itself is in "
                             f"{sorted(ref_frames)[0]}; the file is inconsistent (damaged or edited)", path)
    for roi in ds.get("StructureSetROISequence") or []:  # RTSTRUCT: the frame each ROI's contours are in
        frame = str(roi.get("ReferencedFrameOfReferenceUID", ""))
        if frame and frame not in ref_frames:
            raise InputError(f"ROI {roi.get('ROINumber', '?')} of this {what} has its contours in frame of reference {frame}, the "
                             f"reference series is in {sorted(ref_frames)[0]}; give --reference the series it belongs to", path)
