"""Readers and writers by format: NIfTI, PNG/JPEG/TIFF, DICOM (file or series folder), dataset layouts.

Entry points:
    * :func:`read_image` / :func:`write_image` dispatch by suffix (DICOM also by its ``DICM`` preamble or a folder).
    * :func:`discover_inputs` turns a file, a DICOM folder, a folder of images or a dataset folder into cases.
    * :func:`medannot.io.atomic.atomic_path` for any output file.

Every reader raises :class:`~medannot.errors.InputError` (or its subclass
:class:`~medannot.errors.GeometryError`) with a one-line message starting with the path.
"""

from __future__ import annotations

from pathlib import Path

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError, OutputError
from medannot.io._common import DICOM_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, check_readable_file, parse_kind
from medannot.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text

__all__ = [
    "InputItem",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "discover_inputs",
    "read_image",
    "write_image",
]

_WRITABLE = (".nii.gz", ".nii", ".png", ".tif", ".tiff")


def _has_dicom_preamble(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_image(path: str | Path, kind: ImageKind | str | None = None) -> Image:
    """Read an image file or a DICOM series folder.

    Args:
        path: ``.nii``/``.nii.gz``; ``.png``/``.jpg``/``.jpeg``/``.tif``/``.tiff``/``.bmp`` (2D);
            a DICOM file (``.dcm`` or any file with the ``DICM`` preamble); or a folder holding one DICOM series.
        kind: ``"intensity"`` (default when ``None``) or ``"label"`` (integer dtype).

    Returns:
        The image in RAS mm (3D for NIfTI and DICOM series, 2D for pictures and single DICOM slices).

    Raises:
        InputError: Missing, empty, unreadable, corrupt or unsupported input (message starts with the path).
        GeometryError: Inconsistent geometry (e.g. a DICOM series with missing slices).
    """
    kind = parse_kind(kind)
    p = Path(path)
    if p.is_dir():
        from medannot.io.dicom import read_dicom_series

        return read_dicom_series(p, kind=kind)
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        from medannot.io.nifti import read_nifti

        return read_nifti(p, kind=kind)
    if name.endswith(RASTER_SUFFIXES):
        from medannot.io.raster import read_raster

        return read_raster(p, kind=kind)
    p, head = check_readable_file(p)
    if name.endswith(DICOM_SUFFIXES) or _has_dicom_preamble(head):
        from medannot.io.dicom import read_dicom_file

        return read_dicom_file(p, kind=kind)
    supported = ", ".join(NIFTI_SUFFIXES + RASTER_SUFFIXES + DICOM_SUFFIXES)
    raise InputError(f"unknown image format (suffix {p.suffix or 'none'!r}, no DICOM preamble); expected one of {supported}", p)


def write_image(image: Image, path: str | Path) -> Path:
    """Write an image atomically, choosing the format by suffix.

    Args:
        image: Image to write.
        path: ``.nii.gz``/``.nii`` (any image), ``.png`` (2D, 1 or 3 channels), ``.tif``/``.tiff`` (2D or 3D).

    Returns:
        The written path.

    Raises:
        OutputError: Unsupported suffix or the file cannot be written.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        from medannot.io.nifti import write_nifti

        return write_nifti(image, p)
    if name.endswith((".png", ".tif", ".tiff")):
        from medannot.io.raster import write_raster

        return write_raster(image, p)
    raise OutputError(f"cannot write suffix {p.suffix or 'none'!r}; expected one of {', '.join(_WRITABLE)}", p)


def __getattr__(name: str):  # lazy: discovery pulls in pydicom only when used
    if name in ("discover_inputs", "InputItem"):
        from medannot.io import discover

        return getattr(discover, name)
    raise AttributeError(f"module 'medannot.io' has no attribute {name!r}")
