"""Turning uploaded files into case images, safely.

Accepted: NIfTI (``.nii``, ``.nii.gz``), DICOM (``.dcm`` or any file with the ``DICM`` preamble; a folder of
them in a zip is one series), PNG/JPEG/TIFF/BMP pictures, and zip archives of those. Refused with a
one-line reason: anything else, zip members with absolute or ``..`` paths, encrypted members, members
with an unsupported compression method or a wrong declared size, archives inside the archive, archives
with more files or more uncompressed bytes than the settings allow (zip bombs: declared sizes are checked
first, then every inflated byte is counted), images whose header declares more voxel data than
``max_image_bytes`` or more than ``max_ratio`` times their compressed size (checked from the header,
before anything is allocated; see :mod:`medannot.io.bounded`), and files medannot cannot read as an
image. User-given names are kept only as display names (sanitised); nothing is written under a name
taken from the upload, and messages name the upload, never a server path.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medannot.data import Image
from medannot.errors import InputError, MedannotError
from medannot.io._common import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES
from medannot.io.bounded import (
    InflateBudget,
    InflateLimits,
    ZipLimits,
    check_declared,
    check_zip,
    declared_nbytes,
    extract_member,
    format_bytes,
    open_zip,
)
from medannot.server.imaging import nifti_stream, read_nifti_head

IMAGE_SUFFIXES = tuple(NIFTI_SUFFIXES) + tuple(RASTER_SUFFIXES)
ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1 << 20
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|\._)")


@dataclass
class PreparedCase:
    """One case read from an upload.

    Attributes:
        name: Display name (sanitised from the uploaded file or folder name).
        image: The image as read by medannot.
        source_format: ``nifti``, ``dicom-series``, ``dicom``, ``raster``.
        source_zip: For DICOM: the original files as a zip (kept for DICOM SEG export), else None.
    """

    name: str
    image: Image
    source_format: str
    source_zip: bytes | None = None


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on one upload.

    Attributes:
        max_files: Most files in a zip archive.
        max_bytes: Most bytes of one uploaded file and of everything a zip inflates to.
        max_image_bytes: Most voxel bytes one image may declare (checked from its header before reading).
        max_ratio: Most inflated bytes per compressed byte of a gzip file or zip member (None: no check).
    """

    max_files: int
    max_bytes: int
    max_image_bytes: int = 1024**3
    max_ratio: float | None = 200.0


def display_name(raw: str) -> str:
    """A safe display name from a user-given file name: its stem, characters limited to ``[A-Za-z0-9._-]``."""
    base = PurePosixPath(raw.replace("\\", "/")).name
    lower = base.lower()
    for suffix in (*IMAGE_SUFFIXES, *DICOM_SUFFIXES, ".zip"):
        if lower.endswith(suffix):
            base = base[: -len(suffix)]
            break
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:100]
    return name or "case"


def _suffix_of(name: str) -> str | None:
    lower = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + tuple(DICOM_SUFFIXES), key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    return None


def _is_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _copy_bounded(src: BinaryIO, dst: Path, budget: list[int], what: str) -> None:
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise InputError(f"{what}: the archive inflates to more bytes than allowed (zip bomb?); split it")
            out.write(chunk)


def _read(path: Path, what: str) -> Image:
    """Read a checked file with medannot's reader; errors name ``what`` (the upload), never the server's path."""
    from medannot.io import read_image

    try:
        return read_image(path)
    except MedannotError as exc:
        raise InputError(f"{what}: {exc.reason.splitlines()[0] if exc.reason else type(exc).__name__}") from None


def _checked_nifti(path: Path, what: str, limits: ArchiveLimits) -> Path:
    """Check a NIfTI file's declared size from its header; a gzipped one is inflated (capped) next to it as ``.nii``.

    Raises:
        InputError: Declared voxel data over ``max_image_bytes`` or over ``max_ratio`` times the compressed
            size, a damaged header, or fewer bytes than declared.
    """
    size = path.stat().st_size
    cap = limits.max_image_bytes + (2 << 20)
    with open(path, "rb") as fh:
        stream = nifti_stream(fh, size, InflateLimits(cap, limits.max_ratio), what)
        gzipped = stream is not fh
        head = read_nifti_head(stream, what)
        check_declared(head.nbytes - head.offset, limits.max_image_bytes, what, compressed_size=size if gzipped else None,
                       max_ratio=limits.max_ratio if gzipped else None)
        if not gzipped:
            if size < head.nbytes:
                raise InputError(f"{what}: holds {size} bytes but its header declares {head.nbytes}; the file is truncated")
            return path
        target = path.with_name(path.name[: -len(".gz")] if path.name.lower().endswith(".gz") else path.name + ".nii")
        left = head.nbytes - len(head.raw)
        with open(target, "wb") as out:
            out.write(head.raw)
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    raise InputError(f"{what}: the image data end before the {format_bytes(head.nbytes)} its header "
                                     "declares; the file is truncated")
                out.write(chunk)
                left -= len(chunk)
    return target


def _checked_dicom(path: Path, what: str, limits: ArchiveLimits) -> int:
    """The pixel bytes a DICOM file declares (Rows x Columns x frames x samples x bytes), checked against the limit.

    A file whose header cannot be read here returns 0 and is left to the reader, which says why.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            dims = [int(ds.get(tag, default) or default) for tag, default in
                    (("Rows", 0), ("Columns", 0), ("NumberOfFrames", 1), ("SamplesPerPixel", 1))]
            itemsize = max(1, (int(ds.get("BitsAllocated", 16) or 16) + 7) // 8)
    except Exception:  # noqa: BLE001 - damaged header: the reader refuses it with its own message
        return 0
    nbytes = declared_nbytes(dims, itemsize, what)
    check_declared(nbytes, limits.max_image_bytes, what)
    return nbytes


def _checked_raster(path: Path, suffix: str, what: str, limits: ArchiveLimits) -> None:
    """Check a picture's declared size (width x height x bands) from its header before it is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if suffix in (".tif", ".tiff"):
                import tifffile

                with tifffile.TiffFile(path) as tif:
                    series = tif.series[0]
                    nbytes = declared_nbytes(series.shape, series.dtype.itemsize, what)
            else:
                from PIL import Image as PILImage

                with PILImage.open(path) as im:
                    width, height = im.size
                    nbytes = declared_nbytes((width, height, len(im.getbands())), 4 if im.mode in {"I", "F", "I;16"} else 1, what)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL's DecompressionBombError, or a header the reader will refuse
        if type(exc).__name__ == "DecompressionBombError":
            raise InputError(f"{what}: declares more pixels than allowed (a decompression bomb?); send a smaller picture") from None
        return
    check_declared(nbytes, limits.max_image_bytes, what)


def _checked_file(path: Path, suffix: str | None, is_dicom: bool, what: str, limits: ArchiveLimits) -> Path:
    """The file to read after checking what it declares (see the module docstring); a .nii.gz becomes its .nii."""
    if suffix in NIFTI_SUFFIXES:
        return _checked_nifti(path, what, limits)
    if is_dicom:
        _checked_dicom(path, what, limits)
    elif suffix in RASTER_SUFFIXES:
        _checked_raster(path, suffix, what, limits)
    return path


def _zip_dicom(paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, p in enumerate(sorted(paths)):
            zf.write(p, f"{i:05d}.dcm")
    return buf.getvalue()


def _single(upload_name: str, src: BinaryIO, work: Path, budget: list[int], limits: ArchiveLimits) -> PreparedCase:
    suffix = _suffix_of(upload_name)
    what = display_name(upload_name) + (suffix or "")
    target = work / f"upload{suffix or '.dcm'}"
    _copy_bounded(src, target, budget, what)
    with open(target, "rb") as fh:
        head = fh.read(132)
    if suffix is None and not _is_dicom(head):
        raise InputError(f"{display_name(upload_name)}: not a medical image file (expected NIfTI, DICOM, PNG/JPEG/TIFF or a zip of them)")
    is_dicom = suffix in DICOM_SUFFIXES or (suffix is None and _is_dicom(head))
    image = _read(_checked_file(target, suffix, is_dicom, what, limits), what)
    fmt = "dicom" if is_dicom else ("nifti" if suffix in NIFTI_SUFFIXES else "raster")
    return PreparedCase(display_name(upload_name), image, fmt, _zip_dicom([target]) if is_dicom else None)


def _check_member(info: zipfile.ZipInfo, archive: str) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts or "\x00" in name:
        raise InputError(f"{archive}: member {name[:100]!r} has an absolute or '..' path; refusing the archive")
    return path


def _archive(upload_name: str, src: BinaryIO, work: Path, limits: ArchiveLimits, budget: list[int]) -> list[PreparedCase]:
    archive = display_name(upload_name) + ".zip"
    raw = work / "archive.zip"
    _copy_bounded(src, raw, budget, archive)
    zip_limits = ZipLimits(max_members=limits.max_files, max_total_bytes=limits.max_bytes, max_ratio=limits.max_ratio,
                           max_depth=0)
    with open_zip(raw, archive) as zf:
        members = check_zip(zf, zip_limits, archive, skip=lambda i: bool(_IGNORED.search(i.filename)))
        inflated = InflateBudget(limits.max_bytes)
        singles: list[tuple[str, Path]] = []
        series: dict[str, list[Path]] = {}
        for index, info in enumerate(members):
            path = _check_member(info, archive)
            suffix = _suffix_of(path.name)
            target = work / f"m{index:06d}{suffix or ''}"
            extract_member(zf, info, target, archive, inflated, zip_limits)
            with open(target, "rb") as fh:
                head = fh.read(132)
            if suffix in DICOM_SUFFIXES or (suffix is None and _is_dicom(head)):
                series.setdefault(str(path.parent), []).append(target)
            elif suffix is None:
                raise InputError(f"{archive}: member {path.name[:100]!r} is not a medical image file; remove it from the archive")
            else:
                singles.append((str(path), target))
    cases = []
    for name, p in singles:
        what = f"{archive}: {PurePosixPath(name).name[:100]}"
        suffix = _suffix_of(name)
        cases.append(PreparedCase(display_name(name), _read(_checked_file(p, suffix, False, what, limits), what),
                                  "nifti" if suffix in NIFTI_SUFFIXES else "raster"))
    for folder, files in sorted(series.items()):
        label = PurePosixPath(folder).name if folder not in {"", "."} else upload_name
        what = f"{archive}: {display_name(label)}"
        declared = sum(_checked_dicom(f, what, limits) for f in files)
        check_declared(declared, limits.max_image_bytes, what)
        series_dir = work / f"series{len(cases):04d}"
        series_dir.mkdir()
        for i, f in enumerate(sorted(files)):
            shutil.move(f, series_dir / f"{i:05d}.dcm")
        moved = sorted(series_dir.iterdir())
        image = _read(series_dir, what) if len(moved) > 1 else _read(moved[0], what)
        cases.append(PreparedCase(display_name(label), image, "dicom-series" if len(moved) > 1 else "dicom", _zip_dicom(moved)))
    if not cases:
        raise InputError(f"{archive}: holds no medical image file")
    return cases


def prepare_upload(upload_name: str, src: BinaryIO, limits: ArchiveLimits) -> list[PreparedCase]:
    """Read one uploaded file (an image or a zip of images) into cases.

    Args:
        upload_name: The name the client gave (display only; never used as a path).
        src: The uploaded bytes.
        limits: Archive bounds (``max_bytes`` also bounds a single file).

    Returns:
        One :class:`PreparedCase` per image (a DICOM folder in a zip is one case).

    Raises:
        InputError: One line naming the upload and the reason.
    """
    head = src.read(4)
    src.seek(0)
    budget = [limits.max_bytes]
    with tempfile.TemporaryDirectory(prefix="medannot-upload-") as tmp:
        work = Path(tmp)
        if head == ZIP_MAGIC or upload_name.lower().endswith(".zip"):
            return _archive(upload_name, src, work, limits, budget)
        return [_single(upload_name, src, work, budget, limits)]
