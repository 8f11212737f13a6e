"""Shared checks for the readers: file presence, permissions, emptiness, label dtypes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import InputError

#: Memory a single decoded image may need before a reader refuses it (bytes).
MAX_IMAGE_BYTES = 32 * 1024**3


def _open(path: Path):  # indirection so tests can simulate an unreadable file when running as root
    return open(path, "rb")


def check_readable_file(path: str | Path) -> tuple[Path, bytes]:
    """Check that ``path`` is an existing, non-empty, readable file.

    Args:
        path: File to check.

    Returns:
        The path and its first 512 bytes (for format sniffing).

    Raises:
        InputError: Missing, a folder, empty, or unreadable; the message starts with the path.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("file not found; check the path", p)
    if p.is_dir():
        raise InputError("expected a file, received a folder; pass the image file (or a DICOM series folder to read_image)", p)
    try:
        size = p.stat().st_size
        with _open(p) as fh:
            head = fh.read(512)
    except PermissionError:
        raise InputError("permission denied when reading; make the file readable (chmod +r)", p) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror or exc})", p) from None
    if size == 0:
        raise InputError("file is empty (0 bytes); the copy or download probably failed", p)
    return p, head


def check_allocation(path: Path, nbytes: int, what: str = "image") -> None:
    """Refuse to allocate absurd amounts of memory for a declared image size.

    Raises:
        InputError: If ``nbytes`` exceeds :data:`MAX_IMAGE_BYTES`.
    """
    if nbytes > MAX_IMAGE_BYTES:
        raise InputError(
            f"declared {what} size needs {nbytes / 1024**3:.1f} GiB, more than the {MAX_IMAGE_BYTES / 1024**3:.0f} GiB "
            "limit; the header is probably corrupt",
            path,
        )


def smallest_unsigned(max_value: int) -> np.dtype:
    """Smallest unsigned integer dtype holding ``max_value`` (uint8, uint16 or uint32)."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def to_label_array(array: np.ndarray, path: Path | None = None) -> np.ndarray:
    """Convert an array read from a file into a label array (smallest unsigned integer dtype).

    Float arrays are accepted when every value is a whole number (labels stored as float).
    An empty array is returned unchanged (as uint8).

    Raises:
        InputError: On non-integer values, NaN, or negative labels.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        return arr.astype(np.uint8)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"expected a label image with integer values, received dtype {arr.dtype}", path)
        if not np.all(np.isfinite(arr)):
            raise InputError("label image contains NaN or infinite values; expected whole numbers >= 0", path)
        if not np.array_equal(arr, np.round(arr)):
            raise InputError(
                "label image has non-integer values; expected whole numbers (was an intensity image passed as labels?)", path
            )
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise InputError(f"label image has negative values (min {lo:g}); expected labels >= 0", path)
    return arr.astype(smallest_unsigned(int(hi)), copy=False)


def label_dtype_for_writing(array: np.ndarray) -> np.dtype:
    """uint8 when labels fit (<= 255), else uint16 (<= 65535), else uint32.

    Raises:
        InputError: On negative labels.
    """
    if array.size == 0:
        return np.dtype(np.uint8)
    lo = int(array.min())
    if lo < 0:
        raise InputError(f"cannot store negative labels (min {lo}); labels must be >= 0")
    return smallest_unsigned(int(array.max()))


def parse_kind(kind: ImageKind | str | None) -> ImageKind:
    """``None`` means intensity; strings are parsed once (a typo lists the valid names)."""
    return ImageKind.INTENSITY if kind is None else ImageKind.parse(kind)


def strip_image_suffix(name: str) -> str:
    """File name without its image suffix (``.nii.gz``, ``.nii``, ``.png``, ``.tif``, ``.dcm``, ...)."""
    lower = name.lower()
    for suf in KNOWN_SUFFIXES:
        if lower.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return name


NIFTI_SUFFIXES = (".nii.gz", ".nii")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
INV3_SUFFIXES = (".inv3",)
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")  # NRRD and MetaImage (medannot.io.itk_formats)
MGH_SUFFIXES = (".mgz", ".mgh")  # FreeSurfer (medannot.io.mgh)
KNOWN_SUFFIXES = (NIFTI_SUFFIXES + (".ome.tiff", ".ome.tif") + RASTER_SUFFIXES + DICOM_SUFFIXES + INV3_SUFFIXES + (".seg.nrrd",)
                  + ITK_SUFFIXES + MGH_SUFFIXES)


def is_hidden(path: Path) -> bool:
    """Hidden files and macOS resource forks (``._name``) are skipped by folder readers."""
    return path.name.startswith(".")


def file_size(path: Path) -> int:
    """Size in bytes (0 when it cannot be read)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
