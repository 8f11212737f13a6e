"""Turning uploaded files into case images, safely.

Accepted: NIfTI (``.nii``, ``.nii.gz``), DICOM (``.dcm`` or any file with the ``DICM`` preamble; a folder of
them in a zip is one series), PNG/JPEG/TIFF/BMP pictures, and zip archives of those. Refused with a
one-line reason: anything else, zip members with absolute or ``..`` paths, archives with more files or
more uncompressed bytes than the settings allow (zip bombs; sizes are counted while inflating, not
taken from the archive's own header), and files medannot cannot read as an image. User-given names are
kept only as display names (sanitised); nothing is written under a name taken from the upload.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medannot.data import Image
from medannot.errors import InputError
from medannot.io._common import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES

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
    """Bounds on one upload (counts and bytes)."""

    max_files: int
    max_bytes: int


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


def _read(path: Path, fmt: str) -> Image:
    from medannot.io import read_image

    return read_image(path)


def _zip_dicom(paths: list[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, p in enumerate(sorted(paths)):
            zf.write(p, f"{i:05d}.dcm")
    return buf.getvalue()


def _single(upload_name: str, src: BinaryIO, work: Path, budget: list[int]) -> PreparedCase:
    suffix = _suffix_of(upload_name)
    target = work / f"upload{suffix or '.dcm'}"
    _copy_bounded(src, target, budget, upload_name)
    with open(target, "rb") as fh:
        head = fh.read(132)
    if suffix is None and not _is_dicom(head):
        raise InputError(f"{display_name(upload_name)}: not a medical image file (expected NIfTI, DICOM, PNG/JPEG/TIFF or a zip of them)")
    is_dicom = suffix in DICOM_SUFFIXES or (suffix is None and _is_dicom(head))
    image = _read(target, "dicom" if is_dicom else "image")
    fmt = "dicom" if is_dicom else ("nifti" if suffix in NIFTI_SUFFIXES else "raster")
    return PreparedCase(display_name(upload_name), image, fmt, _zip_dicom([target]) if is_dicom else None)


def _check_member(info: zipfile.ZipInfo, archive: str) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise InputError(f"{archive}: member {name!r} has an absolute or '..' path; refusing the archive")
    return path


def _archive(upload_name: str, src: BinaryIO, work: Path, limits: ArchiveLimits, budget: list[int]) -> list[PreparedCase]:
    archive = display_name(upload_name) + ".zip"
    raw = work / "archive.zip"
    _copy_bounded(src, raw, budget, archive)
    try:
        zf = zipfile.ZipFile(raw)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc})") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir() and not _IGNORED.search(i.filename)]
        if len(members) > limits.max_files:
            raise InputError(f"{archive}: {len(members)} files, more than the {limits.max_files} allowed; split the archive")
        if sum(i.file_size for i in members) > limits.max_bytes:
            raise InputError(f"{archive}: declares more than {limits.max_bytes} uncompressed bytes; split the archive")
        inflated = [limits.max_bytes]
        singles: list[tuple[str, Path]] = []
        series: dict[str, list[Path]] = {}
        for index, info in enumerate(members):
            path = _check_member(info, archive)
            suffix = _suffix_of(path.name)
            target = work / f"m{index:06d}{suffix or ''}"
            with zf.open(info) as fh:
                _copy_bounded(fh, target, inflated, archive)
            with open(target, "rb") as fh:
                head = fh.read(132)
            if suffix in DICOM_SUFFIXES or (suffix is None and _is_dicom(head)):
                series.setdefault(str(path.parent), []).append(target)
            elif suffix is None:
                raise InputError(f"{archive}: member {path.name!r} is not a medical image file; remove it from the archive")
            else:
                singles.append((str(path), target))
    cases = [PreparedCase(display_name(name), _read(p, "image"), "nifti" if _suffix_of(name) in NIFTI_SUFFIXES else "raster")
             for name, p in singles]
    for folder, files in sorted(series.items()):
        series_dir = work / f"series{len(cases):04d}"
        series_dir.mkdir()
        for i, f in enumerate(sorted(files)):
            shutil.move(f, series_dir / f"{i:05d}.dcm")
        moved = sorted(series_dir.iterdir())
        image = _read(series_dir, "dicom") if len(moved) > 1 else _read(moved[0], "dicom")
        name = display_name(PurePosixPath(folder).name if folder not in {"", "."} else upload_name)
        cases.append(PreparedCase(name, image, "dicom-series" if len(moved) > 1 else "dicom", _zip_dicom(moved)))
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
        return [_single(upload_name, src, work, budget)]
