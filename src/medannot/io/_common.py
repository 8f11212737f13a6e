"""Shared checks for the readers: file presence, permissions, emptiness, label dtypes."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import InputError, OutputError
from medannot.io.limits import ReadLimits, check_image_size

#: Default of :attr:`medannot.io.limits.ReadLimits.max_image_bytes` (the limit in force is ``read_limits()``).
MAX_IMAGE_BYTES = ReadLimits().max_image_bytes


_NONFINITE_CHUNK = 1 << 24

#: Folders deeper than this below the folder given are not searched (a tree 1,000 deep is a trap, not a study).
MAX_FOLDER_DEPTH = 64


def special_file_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file or searched as a folder, or None for a regular file, a folder or a
    path that does not exist. Never opens anything (a FIFO would block).

    Returns:
        A one-line reason: a FIFO, a device, a socket, a symbolic link loop or a dangling link.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to a file that does not exist (dangling link); fix or remove the link" if os.path.islink(path) else None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself); point it at a real file"
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file: medannot does not read from pipes; save the data to a file and pass that"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device (such as /dev/zero), not a file: pass an image file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file: pass an image file"
    return "not a regular file: pass an image file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for reading; anything else (FIFO, device, socket) is refused without blocking.

    The file is opened non-blocking and checked with ``fstat`` before use, so a FIFO swapped in after a check
    cannot hang the reader.

    Raises:
        InputError: Not a regular file (the message says what it is).
        OSError: As :func:`open` (missing, permission denied).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise InputError(special_file_reason(path) or "not a regular file: pass an image file", Path(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def walk_files(root: str | Path, max_depth: int = MAX_FOLDER_DEPTH, skip_hidden_folders: bool = True,
               prune: Callable[[Path], bool] | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Regular files under ``root`` (recursively, iteratively: no recursion limit), sorted, and what was skipped.

    Symbolic links to folders are followed once (a link back to a folder already searched is skipped as a loop);
    FIFOs, devices, sockets, link loops and dangling links are skipped with their reason, never opened; folders
    more than ``max_depth`` levels below ``root`` are not searched (one skipped entry says so).

    Args:
        root: The folder.
        max_depth: Deepest folder level searched (``root`` is level 0).
        skip_hidden_folders: Leave out folders whose name starts with ``.`` (silently).
        prune: Folders for which this returns True are left out silently (e.g. an output folder inside the input).

    Returns:
        ``(files, skipped)``: files sorted by path (hidden files included: the caller decides), and ``(path, reason)``
        pairs for what was not searched or is not a regular file.
    """
    root = Path(root)
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        return files, skipped
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((folder, f"folder cannot be listed ({exc.strerror or exc})"))
            continue
        subfolders: list[tuple[Path, int]] = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if (skip_hidden_folders and entry.name.startswith(".")) or (prune is not None and prune(path)):
                    continue
                if depth + 1 > max_depth:
                    skipped.append((path, f"more than {max_depth} folders below {root.name or root}; not searched"))
                    continue
                try:
                    st = os.stat(path)
                except OSError as exc:
                    skipped.append((path, f"folder cannot be examined ({exc.strerror or exc})"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    skipped.append((path, "a link back to a folder already searched (a loop); not searched again"))
                    continue
                seen.add(key)
                subfolders.append((path, depth + 1))
            elif is_file:
                files.append(path)
            else:
                skipped.append((path, special_file_reason(path) or "not a regular file"))
        stack.extend(reversed(subfolders))
    return sorted(files), skipped


def _open(path: Path) -> BinaryIO:  # indirection so tests can simulate an unreadable file when running as root
    return open_regular(path)


def check_readable_file(path: str | Path) -> tuple[Path, bytes]:
    """Check that ``path`` is an existing, non-empty, readable regular file.

    Args:
        path: File to check.

    Returns:
        The path and its first 512 bytes (for format sniffing).

    Raises:
        InputError: Missing, a folder, a FIFO / device / socket / link loop (never opened), empty, or unreadable;
            the message starts with the path.
    """
    p = Path(path)
    special = special_file_reason(p)
    if special is not None:
        raise InputError(special, p)
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


def check_allocation(path: Path, nbytes: int, what: str = "image", compressed_size: int | None = None, label: bool = False) -> None:
    """Refuse a declared image size before allocating it: over the limit in force, or (``compressed_size`` given)
    more than its compressed bytes can hold (:func:`medannot.io.limits.check_image_size`).

    Args:
        path: The file.
        nbytes: Bytes of pixel data as stored (not what later steps make of them).
        what: What is declared (named in the message).
        compressed_size: Size of the compressed data, when the pixels are compressed.
        label: A label map (compresses far better than an intensity image).

    Raises:
        InputError: One line with the declared size, the limit and how to raise it.
    """
    check_image_size(path, nbytes, what, compressed_size, label)


def count_nonfinite(arr: np.ndarray) -> int:
    """NaN and infinite values in a float array, counted piece by piece (no copy of the array); 0 for integer arrays."""
    if arr.dtype.kind not in "fc":
        return 0
    if arr.size <= _NONFINITE_CHUNK or arr.ndim == 1:
        flat = arr.reshape(-1) if arr.ndim != 1 else arr
        return int(sum(int(np.count_nonzero(~np.isfinite(flat[i : i + _NONFINITE_CHUNK]))) for i in range(0, max(flat.size, 1), _NONFINITE_CHUNK)))
    axis = int(np.argmax(arr.shape))
    return sum(count_nonfinite(arr[(slice(None),) * axis + (i,)])
               for i in range(arr.shape[axis]))


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


def storable_array(arr: np.ndarray, label: bool, fmt: str, path: Path | None = None) -> np.ndarray:
    """The voxels as a file format stores them: labels as uint8/uint16 (:func:`label_dtype_for_writing`), booleans as
    uint8, floats as float32, 64-bit integers as int32 (float32 when their values do not fit), other integers as is.

    Raises:
        OutputError: A dtype no format stores (complex, strings, objects), naming ``fmt``.
    """
    if label:
        return arr.astype(label_dtype_for_writing(arr), copy=False)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    if arr.dtype in (np.int64, np.uint64):
        info = np.iinfo(np.int32)
        return arr.astype(np.float32 if arr.size and (arr.min() < info.min or arr.max() > info.max) else np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise OutputError(f"cannot store dtype {arr.dtype} in {fmt}; expected integers or floats", path)
    return arr


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
