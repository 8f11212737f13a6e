"""DICOM reading with pydicom: single files, their frames and series folders, LPS -> RAS at the edge.

* :func:`read_dicom_file` (:mod:`medannot.io.dicom_file`): a single-frame file becomes a 2D image
  ``(C, rows, columns)``; a multi-frame file with per-frame positions (enhanced multi-frame, RT dose) a 3D image;
  other multi-frame files, colour clips and Siemens mosaics are refused there and read frame by frame with
  :func:`read_dicom_frames`.
* :func:`read_dicom_series`: a series (a folder, a list of files, or a list of ``(name, bytes)`` files held in
  memory) becomes a 3D image ``(1, columns, rows, slices)``: array index ``(i, j, k)`` = (column, row, slice),
  slices sorted along the slice normal. This is the layout of dcm2niix and of ITK (whose ``GetArrayFromImage``
  returns the transpose). The geometry rules are those of :mod:`medannot.io.dicom_geometry`.
* :func:`series_headers`: the headers of a series in that slice order (for DICOM SEG / RTSTRUCT writers), chosen
  by the same rules as :func:`read_dicom_series`.

Pixel values (:mod:`medannot.io._dicom_values`): palette colour and YCbCr become RGB, MONOCHROME1 is inverted
so higher is brighter (as highdicom does), RescaleSlope/Intercept are applied (HU for CT): int16 when exact in
int16, float32 otherwise; ``meta["pixel_steps"]`` names what was done. Identifiers (PatientID,
StudyInstanceUID, SeriesInstanceUID, Modality, SeriesDescription, SeriesNumber) go into ``Image.meta``.

Choices (documented, tested in tests/io/test_io_dicom_geometry.py and test_io_dicom_bad.py):

* nothing is resampled silently: gantry tilt, uneven spacing (the spacings found are listed), missing
  or duplicate slices and Siemens mosaics are refused with a one-line :class:`GeometryError`/:class:`InputError`;
* every header is parsed once; the declared Rows x Columns x frames x bits is checked against the bytes the
  file holds before anything is allocated or decoded; sequences nested too deeply for pydicom are refused;
* a damaged file in a series folder is skipped (``meta["skipped"]``) only when the other slices are still the
  complete series: a file whose header places it on the stack, or whose loss leaves a gap, refuses the series;
* uncompressed little-endian pixels are copied straight from the files into one preallocated array
  (:mod:`medannot.io._dicom_pixels`); other transfer syntaxes are decoded by pydicom.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, MedannotError
from medannot.io._common import check_allocation, is_hidden, parse_kind, special_file_reason, walk_files
from medannot.io._dicom_pixels import (
    READ_ERRORS,
    Header,
    PixelFormat,
    check_declared_size,
    convert_identifiers,
    correct_unused_bits,
    damaged_header,
    decode_dataset,
    is_native,
    one_line,
    read_dataset,
    read_header,
    read_native_pixels,
    run_parallel,
)
from medannot.io._dicom_tags import (
    COLUMNS_TAG,
    IDENTIFIERS,  # noqa: F401  (re-exported: the identifiers copied into Image.meta)
    ROWS_TAG,
    SOP_CLASS_TAG,
    constants_signature,
    identifiers,
    raw_position,
    raw_text,
    raw_value,
    refuse_mosaic,
    rescale_pair,
    series_uid,
)
from medannot.io._dicom_values import Photometric, to_volume
from medannot.io.dicom_file import read_dicom_file, read_dicom_frames
from medannot.io.dicom_geometry import (
    Slice,
    normal_of,
    number,
    order_slices,
    pixel_spacing,
    plane_of,
    position_or_none,
    slice_thickness,
    stack_geometry,
)

__all__ = ["DicomFolder", "read_dicom_file", "read_dicom_frames", "read_dicom_series", "scan_dicom_folder", "series_headers"]

_READ_WORKERS = 2  # threads copying pixel bytes (file reads release the GIL)
_SEGMENTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # Segmentation, Label Map Segmentation

#: A DICOM file held in memory: (file name, its bytes).
MemoryFile = tuple[str, bytes]


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
    found, skipped = walk_files(folder)
    files = []
    for p in found:
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


def scan_dicom_folder(source: str | Path | Sequence[str | Path | MemoryFile]) -> DicomFolder:
    """Read the headers of every file in a folder (recursively) or of a list of files, each parsed once.

    Args:
        source: A folder, or a list of DICOM file paths, or a list of ``(name, bytes)`` files held in memory
            (named in messages by ``name``; the root is then the first name's folder, e.g. the archive they came from).

    Returns:
        :class:`DicomFolder` grouping image files by SeriesInstanceUID; other files are listed in ``skipped``.

    Raises:
        InputError: The folder does not exist or is not a folder.
    """
    if isinstance(source, (str, Path)):
        root = Path(source)
        special = special_file_reason(root)
        if special is not None:
            raise InputError(special, root)
        if not root.exists():
            raise InputError("folder not found; check the path", root)
        if not root.is_dir():
            raise InputError("expected a folder of DICOM files, received a file", root)
        files, skipped = _list_files(root)
    else:
        items = list(source)
        memory = {Path(f[0]): bytes(f[1]) for f in items if isinstance(f, tuple)}
        if memory and len(memory) != len(items):
            raise InputError("give either file paths or (name, bytes) pairs, not both")
        files = list(memory) if memory else [Path(f) for f in items]  # type: ignore[arg-type]
        root = files[0].parent if files else Path("<memory>" if memory else ".")  # memory: "archive.zip/member" names the archive
        skipped = []
    out = DicomFolder(root=root, skipped=skipped)
    for p in files:
        try:
            header = read_header(p, None, memory.get(p) if not isinstance(source, (str, Path)) else None)
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
    photometric = Photometric.of(hdr)
    if photometric.is_palette:
        raise InputError(f"{p.name} is a PALETTE COLOR image; a 3D series must be grey", where)
    slope, icpt = rescale_pair(hdr, p, 2.0 ** fmt.bits_stored)
    return Slice(ipp, r, c, sp, (fmt.rows, fmt.columns), p.name, (header, fmt, photometric), slope, icpt)


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
                s = Slice(ipp, template.row_cos, template.col_cos, template.spacing, template.shape, header.path.name,
                          (header, *template.source[1:]), template.slope, template.intercept)  # fmt: skip
            check_declared_size(header, s.source[1])
            out.append(s)
        except MedannotError as exc:
            if exc.path == where:
                raise  # a problem of the whole series (multi-frame or colour member)
            out.append(exc)
        except READ_ERRORS as exc:  # a header value pydicom cannot convert: this file is damaged
            out.append(InputError(f"cannot read a header value ({one_line(exc)[:160]}); the file is damaged", header.path))
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
    unknown = Path("<unknown file>")
    dists = np.array([s.position @ normal for s in good])
    for exc, pos in bad:
        if pos is not None and np.min(np.abs(dists - pos @ normal)) < 1e-3:
            skipped.append((exc.path or unknown, f"{exc.reason} (a usable copy of this slice is present)"))
            continue
        if pos is not None:
            raise type(exc)(
                f"{exc.reason}; this slice at {float(pos @ normal):.3f} mm along the normal belongs to the series of {len(good)} "
                "other usable slice(s), which is incomplete without it",
                exc.path,
            )
        skipped.append((exc.path or unknown, exc.reason))
    return good, skipped


def _load_pixels(slices: list[Slice], where: Path, notes: list[str]) -> np.ndarray:
    """Raw frames ``(N, rows, columns)`` of sorted slices: native little-endian files copied straight from disk
    into one preallocated array on a small thread pool, anything else decoded by pydicom."""
    formats = {s.source[1] for s in slices}
    fmt = next(iter(formats))
    native = len(formats) == 1 and all(is_native(s.source[0], fmt) for s in slices)
    n, (rows, cols) = len(slices), slices[0].shape
    check_allocation(where, rows * cols * n * max(1, fmt.bits_allocated // 8), "DICOM volume")
    if native:
        raw = np.empty((n, rows, cols), dtype=fmt.native_dtype())
        tasks: list[Callable[[], None]] = [partial(read_native_pixels, s.source[0], raw[k]) for k, s in enumerate(slices)]
        errors = run_parallel(tasks, _READ_WORKERS)
    else:
        holder: list[np.ndarray] = []

        def decode(k: int, s: Slice) -> None:
            header = s.source[0]
            px = decode_dataset(read_dataset(header.path, notes, header.data), header.path, notes)
            if px.shape != (rows, cols):
                raise InputError(f"decoded pixels have shape {px.shape}, expected {(rows, cols)} (one grey frame)", header.path)
            if not holder:
                holder.append(np.empty((n, rows, cols), dtype=px.dtype))  # decoded straight into one array
            elif not np.can_cast(px.dtype, holder[0].dtype):
                holder[0] = holder[0].astype(np.result_type(holder[0].dtype, px.dtype))
            holder[0][k] = px

        # sequential: pydicom decoding holds the GIL, and warnings.catch_warnings (used around it) is not thread-safe
        errors = run_parallel([partial(decode, k, s) for k, s in enumerate(slices)], workers=1)
    for err in errors:
        if err is not None:
            reason = err.reason if isinstance(err, MedannotError) else one_line(err)
            raise InputError(f"{reason}; the series cannot be read without this slice", getattr(err, "path", where))
    return correct_unused_bits(raw, fmt) if native else holder[0]


def _choose_series(scan: DicomFolder, series_uid: str | None, where: Path) -> str:
    """The SeriesInstanceUID to read: ``series_uid``, or the folder's only series.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``.
    """
    if not scan.series:
        why = "; ".join(f"{p.name}: {r}" for p, r in scan.skipped[:3])
        raise InputError(f"no DICOM image found ({len(scan.skipped)} file(s) skipped{': ' + why if why else ''})", where)
    if series_uid is not None:
        if series_uid not in scan.series:
            have = "; ".join(scan.describe(u) for u in scan.series)
            raise InputError(f"series_uid {series_uid} not found; the folder holds: {have}", where)
        return series_uid
    if len(scan.series) > 1:
        have = "; ".join(scan.describe(u) for u in scan.series)
        raise InputError(f"folder holds {len(scan.series)} series: {have}; pass series_uid=... to choose one", where)
    return next(iter(scan.series))


def _single_file(scan: DicomFolder, uid: str) -> Path | None:
    """The file of a one-file series that :func:`read_dicom_file` reads instead of the stacker: a multi-frame file,
    or a single picture without a patient position (a radiograph, an ultrasound frame: it becomes a 2D image)."""
    files = scan.series[uid]
    if len(files) != 1:
        return None
    path, ds = files[0]
    if int(number(ds, "NumberOfFrames", 1)) > 1 or position_or_none(ds, path) is None:
        return path
    return None


def _stacked_slices(scan: DicomFolder, uid: str, where: Path, notes: list[str]) -> tuple[list[Slice], float | None, list[tuple[Path, str]]]:
    """The usable slices of a series sorted along the normal, the step (mm) and the skipped damaged files."""
    slices, bad = _series_slices(scan, uid, where, notes)
    try:
        slices, dz = order_slices(slices, where)
    except GeometryError as exc:
        if scan.unreadable or bad:
            lost = "; ".join(f"{p.name}: {r}" for p, r in (scan.unreadable + bad)[:3])
            raise GeometryError(f"{exc.reason}; unreadable file(s) skipped: {lost}", where) from None
        raise
    return slices, dz, bad


@damaged_header
def read_dicom_series(
    source: str | Path | Sequence[str | Path | MemoryFile],
    kind: ImageKind | str | None = None,
    series_uid: str | None = None,
) -> Image:
    """Read one DICOM series (a folder, searched recursively, or a list of files) as a 3D image.

    A series of one file is read by :func:`read_dicom_file` when it is a multi-frame file (3D when its frames have
    positions) or a single picture without a patient position (a radiograph: a 2D image).

    Each header is parsed once; uncompressed little-endian pixels are copied from the files straight into
    one preallocated array (2 threads), others are decoded by pydicom. A damaged file is skipped (and listed
    in ``meta["skipped"]``) only when the remaining slices still make the complete series; otherwise the series
    is refused with that file's reason.

    Args:
        source: Folder, list of files, or list of ``(name, bytes)`` files held in memory.
        kind: ``"intensity"`` (default) or ``"label"``.
        series_uid: SeriesInstanceUID to read when the folder holds several series.

    Returns:
        3D image ``(1, columns, rows, slices)`` in RAS mm, values as the module docstring says (int16 when exact, else
        float32; HU for CT); meta holds the identifiers, ``"dicom_files"`` (count), ``"skipped"`` (``[path, reason]``
        pairs) and ``"pixel_steps"``. The array is a transposed view of the ``(slices, rows, columns)`` buffer
        (Fortran-ordered), not a copy.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``, unreadable slices,
            colour or palette slices.
        GeometryError: Duplicate or missing slices, uneven spacing (the spacings found are listed), mixed orientation /
            pixel spacing / matrix size, gantry tilt.
    """
    kind = parse_kind(kind)
    scan = scan_dicom_folder(source)
    where = scan.root
    uid = _choose_series(scan, series_uid, where)
    files = scan.series[uid]
    single = _single_file(scan, uid)
    if single is not None:
        header = scan.headers[single]
        image = read_dicom_file(header.data if header.data is not None else single, kind, name=single.name)
        image.meta["skipped"] = [[str(p), r] for p, r in scan.skipped]
        return image
    notes: list[str] = []
    slices, dz, bad = _stacked_slices(scan, uid, where, notes)
    first = files[0][1]
    thickness = slice_thickness(first, ("SpacingBetweenSlices", "SliceThickness"))
    vol, steps = to_volume(_load_pixels(slices, where, notes), slices, kind, where, [s.source[2] for s in slices])
    geometry = stack_geometry(slices, dz, thickness, where)
    meta: dict[str, Any] = {"source": str(where), "format": "dicom-series", **identifiers(first)}
    meta["photometric"] = slices[0].source[2].interpretation
    meta["dicom_files"] = len(slices)
    meta["skipped"] = [[str(p), r] for p, r in scan.skipped + bad]
    if steps:
        meta["pixel_steps"] = steps
    if bad:
        notes.extend(f"{p.name}: skipped ({r})" for p, r in bad)
    if notes:
        meta["warnings"] = notes
    return Image(vol, geometry, kind, meta)


@damaged_header
def series_headers(source: str | Path | Sequence[str | Path | MemoryFile], series_uid: str | None = None) -> list[Any]:
    """Headers (no pixel data) of the files :func:`read_dicom_series` reads, in its slice order.

    The same files are chosen (damaged files skipped by the same rule) and sorted the same way, so dataset ``n``
    is slice ``k = n`` of the image; a series of one enhanced multi-frame file is returned as that one dataset.

    Args:
        source: A series folder (searched recursively), a list of files, or ``(name, bytes)`` files in memory.
        series_uid: SeriesInstanceUID to pick when the folder holds several series.

    Returns:
        pydicom datasets read with ``stop_before_pixels=True``.

    Raises:
        InputError: No DICOM image, several series without ``series_uid``, unknown ``series_uid``, unusable slices.
        GeometryError: The slices do not make one regular stack (missing, duplicate, tilted, ...).
    """
    scan = scan_dicom_folder(source)
    where = scan.root
    uid = _choose_series(scan, series_uid, where)
    if _single_file(scan, uid) is not None:
        return [scan.series[uid][0][1]]
    slices, _, _ = _stacked_slices(scan, uid, where, [])
    return [s.source[0].dataset for s in slices]
