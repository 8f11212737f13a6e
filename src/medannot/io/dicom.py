"""DICOM reading with pydicom: single files and series folders, LPS -> RAS at the edge.

A single-frame file becomes a 2D image ``(C, rows, columns)`` with spacing from
PixelSpacing (or ImagerPixelSpacing, else 1 mm); when the file has a patient position,
``meta["plane_affine_ras"]`` (4x4) maps ``(row, column, 0)`` to RAS mm. A multi-frame
file becomes a 3D image when every frame has a position (enhanced multi-frame, or
GridFrameOffsetVector as in RT dose), otherwise it is refused.

A series (a folder, or a list of files) becomes a 3D image ``(1, columns, rows, slices)``:
array index ``(i, j, k)`` = (column, row, slice), slices sorted along the slice normal
(row cosine x column cosine) by the projection of ImagePositionPatient. This is the layout
of dcm2niix and of ITK (whose ``GetArrayFromImage`` returns the transpose).
RescaleSlope/Intercept are applied (HU for CT): int16 when the result is exact in int16,
float32 otherwise. Identifiers (PatientID, StudyInstanceUID, SeriesInstanceUID, Modality,
SeriesDescription, SeriesNumber) go into ``Image.meta``.

Choices (documented, tested in tests/io/test_io_dicom_geometry.py and test_io_dicom_bad.py):

* nothing is resampled silently: gantry tilt, uneven spacing (the spacings found are listed), missing
  or duplicate slices and Siemens mosaics are refused with a one-line :class:`GeometryError`/:class:`InputError`
  (the rules are in :mod:`medannot.io._dicom_stack`);
* every header is parsed once; the declared Rows x Columns x frames x bits is checked against the bytes the
  file holds before anything is allocated or decoded; sequences nested too deeply for pydicom are refused;
* a damaged file in a series folder is skipped (``meta["skipped"]``) only when the other slices are still the
  complete series: a file whose header places it on the stack, or whose loss leaves a gap, refuses the series;
* uncompressed little-endian pixels are copied straight from the files into one preallocated array
  (:mod:`medannot.io._dicom_pixels`); other transfer syntaxes are decoded by pydicom.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, MedannotError
from medannot.io._common import check_allocation, check_readable_file, is_hidden, parse_kind, to_label_array
from medannot.io._dicom_pixels import (
    Header,
    PixelFormat,
    check_declared_size,
    convert_identifiers,
    correct_unused_bits,
    decode_dataset,
    one_line,
    read_dataset,
    read_header,
    is_native,
    read_native_pixels,
    run_parallel,
)
from medannot.io._dicom_stack import LPS_TO_RAS, Slice, apply_rescale, normal_of, order_slices, stack_affine, to_volume
from medannot.io._dicom_tags import (
    COLUMNS_TAG,
    IDENTIFIERS,  # noqa: F401  (re-exported: the identifiers copied into Image.meta)
    ROWS_TAG,
    SOP_CLASS_TAG,
    constants_signature,
    identifiers,
    multiframe_slices,
    number,
    pixel_spacing,
    plane_of,
    position_or_none,
    raw_position,
    raw_text,
    raw_value,
    refuse_mosaic,
    rescale_pair,
    series_uid,
)

__all__ = ["DicomFolder", "read_dicom_file", "read_dicom_series", "scan_dicom_folder"]

_READ_WORKERS = 2  # threads copying pixel bytes (file reads release the GIL)
_SEGMENTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # Segmentation, Label Map Segmentation


# ----------------------------------------------------------------------------- public: files


def read_dicom_file(path: str | Path, kind: ImageKind | str | None = None) -> Image:
    """Read one DICOM file: single frame -> 2D image, multi-frame with positions -> 3D image.

    Args:
        path: The file.
        kind: ``"intensity"`` (default) or ``"label"``.

    Returns:
        2D image ``(C, rows, columns)`` (C = 3 for colour) or 3D image ``(1, columns, rows, frames)`` in RAS mm;
        Modality LUT (RescaleSlope/Intercept) applied to grey images.

    Raises:
        InputError: Not DICOM, no pixel data, truncated pixel data, undecodable compression,
            multi-frame without per-frame positions.
        GeometryError: Inconsistent frame geometry.
    """
    kind = parse_kind(kind)
    p, _ = check_readable_file(path)
    notes: list[str] = []
    header = read_header(p, notes)
    convert_identifiers(header, notes)
    ds = header.dataset
    refuse_mosaic(ds, p, p)
    ordered: list[Slice] = []
    dz = None
    if ds.get("Rows") and ds.get("Columns"):
        fmt = PixelFormat.of(ds, p)
        check_declared_size(header, fmt)  # before any pixel byte is read
        if fmt.frames > 1:  # geometry checked before decoding too
            if fmt.samples != 1:
                raise InputError(f"multi-frame colour DICOM ({fmt.frames} frames, {fmt.samples} samples) is not a 3D grey volume", p)
            ordered, dz = order_slices(multiframe_slices(ds, p, fmt.frames, (fmt.rows, fmt.columns)), p)
        if is_native(header, fmt):  # copied straight from the file: no second parse, no pydicom buffer
            arr = np.empty((fmt.frames, fmt.rows, fmt.columns), fmt.native_dtype())
            read_native_pixels(header, arr)
            arr = correct_unused_bits(arr, fmt)
            arr = arr if fmt.frames > 1 else arr[0]
        else:
            arr = decode_dataset(read_dataset(p, notes), p, notes)
    else:
        arr = decode_dataset(read_dataset(p, notes), p, notes)
    spp = int(ds.get("SamplesPerPixel") or 1)
    meta: dict[str, Any] = {"source": str(p), "format": "dicom", **identifiers(ds)}
    meta["photometric"] = str(ds.get("PhotometricInterpretation", ""))
    if notes:
        meta["warnings"] = notes
    if ordered:
        if arr.shape != (len(ordered), *ordered[0].shape):
            raise InputError(f"decoded pixels have shape {arr.shape}, expected {(len(ordered), *ordered[0].shape)} (grey frames)", p)
        order = [s.source for s in ordered]
        raw = arr if order == list(range(len(order))) else arr[order]
        vol = to_volume(raw, ordered, kind, p)
        try:
            geometry = Geometry.from_affine(stack_affine(ordered, (number(ds, "SliceThickness", 1.0) or 1.0) if dz is None else dz))
        except GeometryError as exc:
            raise GeometryError(exc.reason, p) from None
        return Image(vol, geometry, kind, meta)
    if spp == 1:
        slope, icpt = rescale_pair(ds)
        values = apply_rescale(arr[None], np.array([slope]), np.array([icpt]))
    else:
        values = np.moveaxis(arr, -1, 0)  # (rows, cols, samples) -> (samples, rows, cols)
    if kind is ImageKind.LABEL:
        if values.shape[0] != 1:
            raise InputError(f"expected a grey label image, received {values.shape[0]} samples per pixel", p)
        values = to_label_array(values, p)
    sp = pixel_spacing(ds, p)
    spacing = (1.0, 1.0) if sp is None else (float(sp[0]), float(sp[1]))
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        r, c, ipp = plane_of(ds, p, p.name)
        aff = np.eye(4)
        aff[:3, 0] = c * spacing[0]
        aff[:3, 1] = r * spacing[1]
        aff[:3, 2] = np.cross(r, c) * (number(ds, "SliceThickness", 1.0) or 1.0)
        aff[:3, 3] = ipp
        meta["plane_affine_ras"] = (LPS_TO_RAS @ aff).tolist()
    return Image(np.ascontiguousarray(values), Geometry(spacing=spacing), kind, meta)


# ----------------------------------------------------------------------------- public: folders


@dataclass
class DicomFolder:
    """Result of scanning a folder: image files grouped by SeriesInstanceUID, plus skipped files.

    Attributes:
        root: The scanned folder.
        series: ``{SeriesInstanceUID: [(path, header dataset), ...]}`` in path order.
        skipped: ``[(path, reason)]`` for hidden and macOS files (``._*``, ``.DS_Store``), DICOMDIR, non-DICOM files,
            unreadable files, DICOM files without an image and DICOM SEG files.
        headers: ``{path: Header}`` for every file in ``series`` (where its pixel data sit in the file).
        unreadable: Skipped files that looked like DICOM but could not be parsed (truncated or corrupt).
    """

    root: Path
    series: dict[str, list[tuple[Path, Any]]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    headers: dict[Path, Header] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def describe(self, uid: str) -> str:
        """One-line description: ``uid (Modality, 'SeriesDescription' #number, N files)``."""
        files = self.series[uid]
        ds = files[0][1]
        desc = str(ds.get("SeriesDescription", "") or "")
        num = ds.get("SeriesNumber")
        parts = [str(ds.get("Modality", "") or "?")]
        if desc:
            parts.append(repr(desc))
        if num is not None and str(num) != "":
            parts.append(f"#{num}")
        return f"{uid} ({', '.join(parts)}, {len(files)} files)"


def _list_files(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    files, skipped = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel[:-1]):
            continue  # inside a hidden folder
        if not p.is_file():
            continue
        if p.name.startswith("._"):
            skipped.append((p, "macOS resource fork ('._' file)"))
        elif p.name == ".DS_Store":
            skipped.append((p, "macOS folder settings ('.DS_Store')"))
        elif is_hidden(p):
            skipped.append((p, "hidden file"))
        elif p.name.upper() == "DICOMDIR":
            skipped.append((p, "DICOMDIR index (not an image)"))
        else:
            files.append(p)
    return files, skipped


def scan_dicom_folder(source: str | Path | Sequence[str | Path]) -> DicomFolder:
    """Read the headers of every file in a folder (recursively) or of a list of files, each parsed once.

    Args:
        source: A folder, or a list of DICOM file paths.

    Returns:
        :class:`DicomFolder` grouping image files by SeriesInstanceUID; other files are listed in ``skipped``.

    Raises:
        InputError: The folder does not exist or is not a folder.
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.exists():
            raise InputError("folder not found; check the path", root)
        if not root.is_dir():
            raise InputError("expected a folder of DICOM files, received a file", root)
        files, skipped = _list_files(root)
    else:
        files = [Path(f) for f in source]
        root = files[0].parent if files else Path(".")
        skipped = []
    out = DicomFolder(root=root, skipped=skipped)
    for p in files:
        try:
            header = read_header(p)
        except InputError as exc:
            out.skipped.append((p, exc.reason))
            if "not a DICOM file" not in exc.reason and "empty" not in exc.reason:
                out.unreadable.append((p, exc.reason))
            continue
        ds = header.dataset
        if not raw_value(ds, ROWS_TAG) or not raw_value(ds, COLUMNS_TAG):
            sop = _sop_class_name(raw_text(ds, SOP_CLASS_TAG, "SOPClassUID"))
            if "Image" in sop and header.pixels is None:
                reason = f"{sop} file without Rows/Columns or pixel data: the file is probably truncated or corrupt"
                out.unreadable.append((p, reason))
            else:
                reason = f"DICOM without an image ({sop})"
            out.skipped.append((p, reason))
            continue
        if raw_text(ds, SOP_CLASS_TAG, "SOPClassUID") in _SEGMENTATION_CLASSES:
            out.skipped.append((p, "DICOM SEG (a segmentation of another series, not an image to annotate)"))
            continue
        uid = series_uid(ds)
        if uid not in out.series:
            convert_identifiers(header)  # the first header of a series names it (case names, Image.meta)
        out.series.setdefault(uid, []).append((p, ds))
        out.headers[p] = header
    return out


def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "unknown SOP class"


def _slice_of(header: Header, where: Path) -> Slice:
    """Geometry and pixel layout of one single-frame file of a series, checked (no pixel read).

    Raises:
        InputError / GeometryError: naming the file (``where`` for problems of the whole series).
    """
    p, hdr = header.path, header.dataset
    refuse_mosaic(hdr, p, where)
    if int(number(hdr, "NumberOfFrames", 1)) > 1:
        raise InputError(f"series mixes a multi-frame file ({p.name}) with other files; read it alone with read_image", where)
    if int(hdr.get("SamplesPerPixel") or 1) != 1:
        raise InputError(f"{p.name} is a colour image; a 3D series must be grey", where)
    r, c, ipp = plane_of(hdr, p, "this file")
    sp = pixel_spacing(hdr, p)
    if sp is None:
        raise GeometryError("lacks PixelSpacing; cannot place it on a 3D grid", p)
    fmt = PixelFormat.of(hdr, p)
    slope, icpt = rescale_pair(hdr)
    return Slice(ipp, r, c, sp, (fmt.rows, fmt.columns), slope, icpt, p.name, source=(header, fmt))


def _slices_of(headers: list[Header], where: Path, notes: list[str]) -> list[Slice | MedannotError]:
    """One :class:`Slice` (or the error that makes the file unusable) per header, in order; pydicom's warnings about
    the values go to ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _slices_of_headers(headers, where)
    notes.extend(one_line(w.message) for w in caught)
    return out


def _slices_of_headers(headers: list[Header], where: Path) -> list[Slice | MedannotError]:
    known: dict[tuple, Slice] = {}
    out: list[Slice | MedannotError] = []
    for header in headers:
        ds = header.dataset
        try:
            key = constants_signature(ds)
            template = known.get(key)
            ipp = raw_position(ds) if template is not None else None
            if template is None or ipp is None:
                s = _slice_of(header, where)
                known.setdefault(key, s)
            else:
                fmt = template.source[1]
                s = Slice(ipp, template.row_cos, template.col_cos, template.spacing, template.shape, template.slope,
                          template.intercept, header.path.name, source=(header, fmt))  # fmt: skip
            check_declared_size(header, s.source[1])
            out.append(s)
        except MedannotError as exc:
            if exc.path == where:
                raise  # a problem of the whole series (multi-frame or colour member)
            out.append(exc)
    return out


def _series_slices(scan: DicomFolder, uid: str, where: Path, notes: list[str]) -> tuple[list[Slice], list[tuple[Path, str]]]:
    """Slices of a series; a damaged file is skipped only when the rest still makes a complete series.

    A file whose position is known (header readable) but whose pixel data or geometry are unusable would leave a
    hole or a missing end slice: the series is refused with that file's reason. A damaged copy of a slice that is
    present anyway (same position) is skipped. Returns the good slices and the skipped ``(path, reason)`` pairs.
    """
    good: list[Slice] = []
    bad: list[tuple[MedannotError, np.ndarray | None]] = []
    headers = [scan.headers[p] for p, _ in scan.series[uid]]
    for header, result in zip(headers, _slices_of(headers, where, notes)):
        if isinstance(result, Slice):
            good.append(result)
        else:
            bad.append((result, position_or_none(header.dataset, header.path)))
    if not good:
        exc = bad[0][0]
        raise type(exc)(f"{exc.reason} (no slice of the series is usable)", exc.path)
    skipped: list[tuple[Path, str]] = []
    normal = normal_of(good[0])
    dists = np.array([s.position @ normal for s in good])
    for exc, pos in bad:
        if pos is not None and np.min(np.abs(dists - pos @ normal)) < 1e-3:
            skipped.append((exc.path, f"{exc.reason} (a usable copy of this slice is present)"))
            continue
        if pos is not None:
            raise type(exc)(
                f"{exc.reason}; this slice at {float(pos @ normal):.3f} mm along the normal belongs to the series of {len(good)} "
                "other usable slice(s), which is incomplete without it",
                exc.path,
            )
        skipped.append((exc.path, exc.reason))
    return good, skipped


def _load_pixels(slices: list[Slice], where: Path, notes: list[str]) -> np.ndarray:
    """Raw frames ``(N, rows, columns)`` of sorted slices: native little-endian files copied straight from disk
    into one preallocated array on a small thread pool, anything else decoded by pydicom."""
    formats = {s.source[1] for s in slices}
    fmt = next(iter(formats))
    native = len(formats) == 1 and all(is_native(s.source[0], fmt) for s in slices)
    n, (rows, cols) = len(slices), slices[0].shape
    check_allocation(where, rows * cols * n * 4, "DICOM volume")
    if native:
        raw = np.empty((n, rows, cols), dtype=fmt.native_dtype())
        tasks = [lambda k=k, s=s: read_native_pixels(s.source[0], raw[k]) for k, s in enumerate(slices)]
        errors = run_parallel(tasks, _READ_WORKERS)
    else:
        holder: list[np.ndarray] = []

        def decode(k: int, s: Slice) -> None:
            header = s.source[0]
            px = decode_dataset(read_dataset(header.path, notes), header.path, notes)
            if px.shape != (rows, cols):
                raise InputError(f"decoded pixels have shape {px.shape}, expected {(rows, cols)} (one grey frame)", header.path)
            if not holder:
                holder.append(np.empty((n, rows, cols), dtype=px.dtype))  # decoded straight into one array
            elif not np.can_cast(px.dtype, holder[0].dtype):
                holder[0] = holder[0].astype(np.result_type(holder[0].dtype, px.dtype))
            holder[0][k] = px

        # sequential: pydicom decoding holds the GIL, and warnings.catch_warnings (used around it) is not thread-safe
        errors = run_parallel([lambda k=k, s=s: decode(k, s) for k, s in enumerate(slices)], workers=1)
    for err in errors:
        if err is not None:
            reason = err.reason if isinstance(err, MedannotError) else one_line(err)
            raise InputError(f"{reason}; the series cannot be read without this slice", getattr(err, "path", where))
    return correct_unused_bits(raw, fmt) if native else holder[0]


def read_dicom_series(
    source: str | Path | Sequence[str | Path],
    kind: ImageKind | str | None = None,
    series_uid: str | None = None,
) -> Image:
    """Read one DICOM series (a folder, searched recursively, or a list of files) as a 3D image.

    Each header is parsed once; uncompressed little-endian pixels are copied from the files straight into
    one preallocated array (2 threads), others are decoded by pydicom. A damaged file is skipped (and listed
    in ``meta["skipped"]``) only when the remaining slices still make the complete series; otherwise the series
    is refused with that file's reason.

    Args:
        source: Folder or list of files.
        kind: ``"intensity"`` (default) or ``"label"``.
        series_uid: SeriesInstanceUID to read when the folder holds several series.

    Returns:
        3D image ``(1, columns, rows, slices)`` in RAS mm, RescaleSlope/Intercept applied (int16 when exact, else
        float32; HU for CT); meta holds the identifiers, ``"dicom_files"`` (count) and ``"skipped"`` (``[path, reason]``
        pairs). The array is a transposed view of the ``(slices, rows, columns)`` buffer (Fortran-ordered), not a copy.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``, unreadable slices.
        GeometryError: Duplicate or missing slices, uneven spacing (the spacings found are listed), mixed orientation /
            pixel spacing / matrix size, gantry tilt.
    """
    kind = parse_kind(kind)
    scan = scan_dicom_folder(source)
    where = scan.root
    if not scan.series:
        why = "; ".join(f"{p.name}: {r}" for p, r in scan.skipped[:3])
        raise InputError(f"no DICOM image found ({len(scan.skipped)} file(s) skipped{': ' + why if why else ''})", where)
    if series_uid is not None:
        if series_uid not in scan.series:
            have = "; ".join(scan.describe(u) for u in scan.series)
            raise InputError(f"series_uid {series_uid} not found; the folder holds: {have}", where)
        uid = series_uid
    elif len(scan.series) > 1:
        have = "; ".join(scan.describe(u) for u in scan.series)
        raise InputError(f"folder holds {len(scan.series)} series: {have}; pass series_uid=... to choose one", where)
    else:
        uid = next(iter(scan.series))
    files = scan.series[uid]
    if len(files) == 1 and int(number(files[0][1], "NumberOfFrames", 1)) > 1:
        image = read_dicom_file(files[0][0], kind)
        image.meta["skipped"] = [[str(p), r] for p, r in scan.skipped]
        return image
    notes: list[str] = []
    slices, bad = _series_slices(scan, uid, where, notes)
    try:
        slices, dz = order_slices(slices, where)
    except GeometryError as exc:
        if scan.unreadable or bad:
            lost = "; ".join(f"{p.name}: {r}" for p, r in (scan.unreadable + bad)[:3])
            raise GeometryError(f"{exc.reason}; unreadable file(s) skipped: {lost}", where) from None
        raise
    first = files[0][1]
    thickness = number(first, "SpacingBetweenSlices", 0.0) or number(first, "SliceThickness", 1.0) or 1.0
    vol = to_volume(_load_pixels(slices, where, notes), slices, kind, where)
    try:
        geometry = Geometry.from_affine(stack_affine(slices, thickness if dz is None else dz))
    except GeometryError as exc:
        raise GeometryError(exc.reason, where) from None
    meta: dict[str, Any] = {"source": str(where), "format": "dicom-series", **identifiers(first)}
    meta["dicom_files"] = len(slices)
    meta["skipped"] = [[str(p), r] for p, r in scan.skipped + bad]
    if bad:
        notes.extend(f"{p.name}: skipped ({r})" for p, r in bad)
    if notes:
        meta["warnings"] = notes
    return Image(vol, geometry, kind, meta)
