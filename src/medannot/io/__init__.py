"""Readers and writers by format: NIfTI, PNG/JPEG/TIFF, DICOM (file or series folder), InVesalius, dataset layouts,
NRRD and MetaImage (through SimpleITK, :mod:`medannot.io.itk_formats`), FreeSurfer MGH/MGZ (nibabel, :mod:`medannot.io.mgh`).

Entry points:
    * :func:`read_image` reads a path (file or DICOM series folder), ``bytes`` or a binary file object; the format
      comes from the suffix (DICOM also by its ``DICM`` preamble; bytes by their signature when the ``name`` hint
      has no image suffix); a zip holding one image or one DICOM series is read too. :func:`write_image`
      dispatches by suffix.
    * :func:`read_dicom_frames` reads every frame of a DICOM file as a 2D image (cine loops, colour clips and
      Siemens mosaics, which :func:`read_image` refuses to stack in 3D).
    * :func:`to_grey` is the named colour -> grey step (mean of R, G, B) that training and inference share.
    * :func:`discover_inputs` turns a file, a DICOM folder, a folder of images or a dataset folder into cases.
    * :func:`medannot.io.atomic.atomic_path` for any output file.

Pixel values are the same whichever entry point reads a file: DICOM palette colour and YCbCr become RGB,
MONOCHROME1 is inverted so that higher is brighter, RescaleSlope/Intercept are applied (HU for CT), and
``Image.meta["pixel_steps"]`` names what was done (:mod:`medannot.io._dicom_values`).

Every reader raises :class:`~medannot.errors.InputError` (or its subclass
:class:`~medannot.errors.GeometryError`) with a one-line message starting with the path (or the ``name`` hint).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Union

from medannot.data.image import Image, ImageKind
from medannot.errors import InputError, OutputError
from medannot.io._common import (
    DICOM_SUFFIXES,
    INV3_SUFFIXES,
    ITK_SUFFIXES,
    MGH_SUFFIXES,
    NIFTI_SUFFIXES,
    RASTER_SUFFIXES,
    check_readable_file,
    parse_kind,
    special_file_reason,
)
from medannot.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from medannot.io.colour import to_grey

__all__ = [
    "ImageSource",
    "InputItem",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "discover_inputs",
    "read_dicom_frames",
    "read_image",
    "to_grey",
    "write_image",
]

#: What :func:`read_image` reads: a path (``str`` / ``os.PathLike``), the file's ``bytes``, or a binary file object.
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_WRITABLE = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".nrrd", ".mha")


def _has_dicom_preamble(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_image(source: ImageSource, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read an image from a path (a file or a DICOM series folder), from ``bytes`` or from a binary file object.

    Args:
        source: ``.nii``/``.nii.gz`` (NIfTI-1 or NIfTI-2); ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` (2D or 3D);
            ``.mgh``/``.mgz``; ``.png``/``.jpg``/``.jpeg``/``.tif``/``.tiff``/``.bmp`` (2D); a DICOM file
            (``.dcm`` or any file with the ``DICM`` preamble); a folder holding one DICOM series; an InVesalius
            project (``.inv3``); a ``.zip`` holding one image or one DICOM series. Or the same file's ``bytes``,
            or a binary file object (opened ``"rb"``; read from its position to the end).
        kind: ``"intensity"`` (default when ``None``) or ``"label"`` (integer dtype).
        name: For bytes and file objects: the file name, whose suffix picks the format (without one, the bytes
            are sniffed); named in messages and ``meta["source"]``. A file object's own ``name`` is used when
            not given. Ignored for paths.

    Returns:
        The image in RAS mm (3D for NIfTI, DICOM series and InVesalius, 2D for pictures and single DICOM slices),
        the same whichever way the file was given.

    Raises:
        InputError: Missing, empty, unreadable, corrupt or unsupported input (message starts with the path or name).
        GeometryError: Inconsistent geometry (e.g. a DICOM series with missing slices).
    """
    kind = parse_kind(kind)
    if not isinstance(source, (str, os.PathLike)):
        if not isinstance(source, (bytes, bytearray, memoryview)) and not hasattr(source, "read"):
            raise TypeError(f"read_image needs a path, bytes or a binary file object, got {type(source).__name__}")
        from medannot.io.memory import read_bytes

        return read_bytes(source, kind, name)
    p = Path(source)
    special = special_file_reason(p)
    if special is not None:
        raise InputError(special, p)
    if p.is_dir():
        from medannot.io.dicom import read_dicom_series

        return read_dicom_series(p, kind=kind)
    name_lower = p.name.lower()
    if name_lower.endswith(NIFTI_SUFFIXES):
        from medannot.io.nifti import read_nifti

        return read_nifti(p, kind=kind)
    if name_lower.endswith(RASTER_SUFFIXES):
        from medannot.io.raster import read_raster

        return read_raster(p, kind=kind)
    if name_lower.endswith(INV3_SUFFIXES):
        from medannot.io.invesalius import read_inv3

        return read_inv3(p, kind=kind)
    if name_lower.endswith(ITK_SUFFIXES):
        from medannot.io.itk_formats import read_itk

        return read_itk(p, kind=kind)
    if name_lower.endswith(MGH_SUFFIXES):
        from medannot.io.mgh import read_mgh

        return read_mgh(p, kind=kind)
    p, head = check_readable_file(p)
    if name_lower.endswith(DICOM_SUFFIXES) or _has_dicom_preamble(head):
        from medannot.io.dicom import read_dicom_file

        return read_dicom_file(p, kind=kind)
    if name_lower.endswith(".zip") or head.startswith(b"PK\x03\x04"):
        from medannot.io.memory import read_zip

        return read_zip(p, kind)
    if head.startswith(b"NRRD000"):
        from medannot.io.itk_formats import read_itk

        return read_itk(p, kind=kind)
    supported = ", ".join(NIFTI_SUFFIXES + RASTER_SUFFIXES + DICOM_SUFFIXES + INV3_SUFFIXES + ITK_SUFFIXES + MGH_SUFFIXES + (".zip",))
    raise InputError(f"unknown image format (suffix {p.suffix or 'none'!r}, no DICOM preamble); expected one of {supported}", p)


def read_dicom_frames(source: ImageSource, kind: ImageKind | str | None = None, *, name: str | None = None) -> list[Image]:
    """Every frame of one DICOM file (path, bytes or binary file object) as a 2D image; see
    :func:`medannot.io.dicom_file.read_dicom_frames`.

    Raises:
        InputError: Not DICOM, no pixel data, truncated or undecodable pixel data.
    """
    from medannot.io.dicom_file import read_dicom_frames as read_frames

    if isinstance(source, (str, os.PathLike)):
        return read_frames(Path(source), kind)
    if not isinstance(source, (bytes, bytearray, memoryview)):
        from medannot.io.memory import data_of

        own = getattr(source, "name", None)
        name = name or (Path(own).name if isinstance(own, (str, Path)) else None)
        source = data_of(source, Path(name or "<bytes>"))
    return read_frames(bytes(source), kind, name=name)


def write_image(image: Image, path: str | Path) -> Path:
    """Write an image atomically, choosing the format by suffix.

    Args:
        image: Image to write.
        path: ``.nii.gz``/``.nii`` (any image), ``.png`` (2D, 1 or 3 channels), ``.tif``/``.tiff`` (2D or 3D),
            ``.nrrd``/``.mha`` (any image, gzip-compressed, through SimpleITK).

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
    if name.endswith((".nrrd", ".mha")):
        from medannot.io.itk_formats import write_itk

        return write_itk(image, p)
    raise OutputError(f"cannot write suffix {p.suffix or 'none'!r}; expected one of {', '.join(_WRITABLE)}", p)


def __getattr__(name: str):  # lazy: discovery pulls in pydicom only when used
    if name in ("discover_inputs", "InputItem"):
        from medannot.io import discover

        return getattr(discover, name)
    raise AttributeError(f"module 'medannot.io' has no attribute {name!r}")
