"""Images held in memory: ``bytes`` or a binary file object (an upload, a message body), and zip archives.

:func:`read_bytes` is what :func:`medannot.io.read_image` calls for such sources. The format comes from the
``name`` hint's suffix when it names one, else from the bytes themselves (:func:`sniff_format`): the ``DICM``
preamble, the gzip / NIfTI / PNG / JPEG / BMP / TIFF / zip signatures. Nothing is written to disk.

A zip archive (a path or bytes) holds either one image file (read as that file) or the DICOM files of one
series (read with :func:`medannot.io.dicom.read_dicom_series`; several series need ``series_uid``).
Zip archives are checked with :mod:`medannot.io.bounded` before anything is inflated (declared sizes within the
reader's memory limit, no forged ratio, no encryption or exotic method, no nested archive), and every member must
inflate to exactly its declared size.
"""

from __future__ import annotations

import enum
import gzip
import io
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError
from medannot.io._common import DICOM_SUFFIXES, ITK_SUFFIXES, MGH_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, parse_kind
from medannot.io.bounded import InflateBudget, ZipLimits, check_zip, format_bytes, open_zip, read_member_bytes
from medannot.io.invesalius import INV3_SUFFIXES
from medannot.io.limits import read_limits

__all__ = ["ImageFormat", "data_of", "format_of_name", "read_bytes", "read_zip", "sniff_format"]

ZIP_SUFFIXES = (".zip",)
#: Bytes of file data allowed beyond the image limit (headers of DICOM files, the NIfTI header, file formats).
_SLACK = 64 * 1024**2


def _zip_limits(label: bool) -> ZipLimits:
    """Zip archives: the reader's memory limit in all (:func:`medannot.io.limits.read_limits`), stored or deflated
    members, no nested archives, and no member declaring more than an image of its kind compresses to (a larger
    ratio is a bomb or a forged header)."""
    limits = read_limits()
    return ZipLimits(max_members=100_000, max_total_bytes=limits.max_image_bytes + _SLACK, max_ratio=limits.ratio(label))
_CHUNK = 16 * 1024**2
_RASTER_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageFormat(enum.StrEnum):
    """File formats :func:`medannot.io.read_image` reads."""

    NIFTI = "nifti"
    DICOM = "dicom"
    RASTER = "raster"
    INV3 = "inv3"
    ZIP = "zip"
    ITK = "itk"  # NRRD, MetaImage (attached forms only from memory)
    MGH = "mgh"


def format_of_name(name: str) -> ImageFormat | None:
    """The format a file name's suffix names, None when it names none."""
    lower = name.lower()
    for suffixes, fmt in ((NIFTI_SUFFIXES, ImageFormat.NIFTI), (RASTER_SUFFIXES, ImageFormat.RASTER),
                          (DICOM_SUFFIXES, ImageFormat.DICOM), (INV3_SUFFIXES, ImageFormat.INV3),
                          (ZIP_SUFFIXES, ImageFormat.ZIP), (ITK_SUFFIXES, ImageFormat.ITK),
                          (MGH_SUFFIXES, ImageFormat.MGH)):  # fmt: skip
        if lower.endswith(suffixes):
            return fmt
    return None


def sniff_format(head: bytes) -> ImageFormat | None:
    """The format the first bytes of a file show (at least 512 bytes, or the whole file), None when unknown."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return ImageFormat.DICOM
    if head.startswith(_RASTER_MAGIC):
        return ImageFormat.RASTER
    if head.startswith(b"PK\x03\x04"):
        return ImageFormat.ZIP
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return ImageFormat.NIFTI
    if head.startswith((b"NRRD000", b"ObjectType = Image", b"NDims = ")):
        return ImageFormat.ITK
    if head.startswith(b"\x00\x00\x00\x01") and len(head) >= 90:
        return ImageFormat.MGH  # MGH version 1, big-endian
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = gzip.GzipFile(fileobj=io.BytesIO(head)).read(512)
        except (OSError, EOFError, zlib.error):
            inner = b""
        if len(inner) >= 262 and inner[257:262] == b"ustar":
            return ImageFormat.INV3  # a gzipped tar: an InVesalius project is the one medannot reads
        if inner.startswith(b"\x00\x00\x00\x01") and inner[344:348] not in (b"n+1\x00", b"ni1\x00"):
            return ImageFormat.MGH  # a gzipped MGH (.mgz)
        return ImageFormat.NIFTI
    return None


def data_of(source: bytes | bytearray | memoryview | BinaryIO, where: Path) -> bytes:
    """The bytes of ``source`` (a binary file object is read to its end, at most the reader's memory limit).

    Raises:
        InputError: Unreadable, a text-mode file object, or more than the memory limit.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = source.read(_CHUNK)
            if not isinstance(chunk, (bytes, bytearray)):
                raise InputError(f"expected a binary file object (opened 'rb'), it gave {type(chunk).__name__}", where)
            if not chunk:
                break
            total += len(chunk)
            if total > read_limits().max_image_bytes + _SLACK:
                raise InputError(f"the file object holds more than {format_bytes(read_limits().max_image_bytes + _SLACK)}, more than one "
                                 "image may; if it is right, raise the limit (medannot --max-image-mb)", where)
            chunks.append(bytes(chunk))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the file object ({' '.join(str(exc).split())})", where) from None
    return b"".join(chunks)


def read_bytes(source: bytes | bytearray | memoryview | BinaryIO, kind: ImageKind | str | None = None, name: str | None = None,
               series_uid: str | None = None) -> Image:  # fmt: skip
    """Read an image held in memory.

    Args:
        source: The file's bytes, or a binary file object (read from its position to the end).
        kind: ``"intensity"`` (default) or ``"label"``.
        name: The file name (its suffix picks the format; without one the bytes are sniffed); a file object's
            own ``name`` is used when not given. Named in messages and ``meta["source"]``.
        series_uid: For a zip of several DICOM series, the one to read.

    Returns:
        The image, as :func:`medannot.io.read_image` reads the same file from disk.

    Raises:
        InputError: Empty, unknown format, or as the format's reader.
    """
    if name is None and not isinstance(source, (bytes, bytearray, memoryview)):
        own = getattr(source, "name", None)
        name = Path(own).name if isinstance(own, (str, Path)) else None
    where = Path(name or "<bytes>")
    data = data_of(source, where)
    if not data:
        raise InputError("file is empty (0 bytes); the copy or upload probably failed", where)
    fmt = format_of_name(where.name) or sniff_format(data[:512])
    if fmt is None:
        raise InputError("unknown image format: the name has no image suffix and the bytes hold no known signature "
                         "(DICOM, NIfTI, PNG, JPEG, BMP, TIFF, InVesalius, NRRD, MetaImage, MGH, zip); pass name='file.ext'", where)  # fmt: skip
    label = str(where)
    if fmt is ImageFormat.NIFTI:
        from medannot.io.nifti import read_nifti

        return read_nifti(data, kind, name=label)
    if fmt is ImageFormat.RASTER:
        from medannot.io.raster import read_raster

        return read_raster(data, kind, name=label)
    if fmt is ImageFormat.INV3:
        from medannot.io.invesalius import read_inv3

        return read_inv3(data, kind, name=label)
    if fmt is ImageFormat.ZIP:
        return read_zip(data, kind, where, series_uid)
    if fmt is ImageFormat.ITK:
        from medannot.io.itk_formats import read_itk

        return read_itk(data, kind, name=label)
    if fmt is ImageFormat.MGH:
        from medannot.io.mgh import read_mgh

        return read_mgh(data, kind, name=label)
    from medannot.io.dicom_file import read_dicom_file

    return read_dicom_file(data, kind, name=label)


def _skipped_member(info: zipfile.ZipInfo) -> bool:
    """Hidden files and folders, macOS resource forks (``__MACOSX/``, ``._x``, ``.DS_Store``) and DICOMDIR."""
    parts = Path(info.filename).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts) or (bool(parts) and parts[-1].upper() == "DICOMDIR")


def read_zip(source: str | Path | bytes, kind: ImageKind | str | None = None, where: Path | None = None,
             series_uid: str | None = None) -> Image:  # fmt: skip
    """Read the image in a zip archive: its one image file, or the one DICOM series its files make.

    Args:
        source: The archive's path or bytes.
        kind: ``"intensity"`` (default) or ``"label"``.
        where: Names the archive in messages (default: the path, or ``<bytes>.zip``).
        series_uid: The series to read when the DICOM files make several.

    Raises:
        InputError: Not a zip, an empty archive, members too large, or several image files that are not DICOM.
    """
    where = where or (Path("<bytes>.zip") if isinstance(source, (bytes, bytearray, memoryview)) else Path(source))
    what = str(where)
    archive = open_zip(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source, what)
    with archive:
        zip_limits = _zip_limits(parse_kind(kind) is ImageKind.LABEL)
        infos = check_zip(archive, zip_limits, what, skip=_skipped_member)
        if not infos:
            raise InputError("the zip archive holds no file", where)
        budget = InflateBudget(zip_limits.max_total_bytes)
        members = [(info.filename, read_member_bytes(archive, info, what, budget, zip_limits)) for info in infos]
    formats = [format_of_name(n) or sniff_format(d[:512]) for n, d in members]
    if len(members) == 1 and formats[0] not in (ImageFormat.DICOM, ImageFormat.ZIP, None):
        return read_bytes(members[0][1], kind, f"{where}/{members[0][0]}")
    if any(f not in (ImageFormat.DICOM, None) for f in formats):
        others = [n for (n, _), f in zip(members, formats) if f not in (ImageFormat.DICOM, None)][:3]
        raise InputError(f"the zip archive holds {len(members)} files, not one image nor one DICOM series (e.g. {others}); "
                         "zip one image, or the DICOM files of one series", where)  # fmt: skip
    from medannot.io.dicom import read_dicom_series

    image = read_dicom_series([(f"{where}/{n}", d) for n, d in members], kind, series_uid)
    image.meta["source"] = str(where)
    return image
