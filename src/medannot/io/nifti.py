"""NIfTI-1 reading and writing (``.nii`` / ``.nii.gz``) with nibabel.

Conventions:
    * A 3D file becomes a 3D :class:`~medannot.data.image.Image` with one channel.
    * A 4D file becomes a 3D image whose 4th axis is the channel axis (MSD multi-modal images).
    * A 2D file (a single slice) stays 3D with one slice: dimensionality is never guessed.
    * Labels (``kind="label"``) are returned as the smallest unsigned integer dtype.

Writing stores labels as uint8 (uint16 above 255 labels), floating-point intensities as
float32 and integer intensities in their own dtype; qform and sform hold the same affine,
units are mm. NIfTI-1 stores the affine in float32, so positions survive a round trip to
float32 precision (exact for typical values, ~1e-5 mm for arbitrary origins near 100 mm).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io._common import (
    check_allocation,
    check_readable_file,
    count_nonfinite,
    open_regular,
    parse_kind,
    storable_array,
    to_label_array,
)
from medannot.io.atomic import atomic_path
from medannot.io.bounded import GZIP_MAGIC, BoundedGzipReader, InflateLimits, declared_nbytes, format_bytes, read_exactly
from medannot.io.limits import read_limits

__all__ = ["read_nifti", "write_nifti"]

_XFORM_CODES = {"unknown": 0, "scanner": 1, "aligned": 2, "talairach": 3, "mni": 4}
_NIFTI1, _NIFTI2 = 348, 540
#: Inflated bytes allowed after the declared voxels of a .nii.gz (padding some writers leave); more is refused.
_TRAILING = 1 << 20
#: Sane voxel sizes and positions (mm): outside these the header is damaged, whatever nibabel makes of it.
_MIN_SPACING_MM, _MAX_SPACING_MM, _MAX_ORIGIN_MM = 1e-6, 1e5, 1e7


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_SILENT = logging.getLogger("medannot.io.nifti.nibabel_checks")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


@contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel reports header problems on its ``nibabel.global`` logger and as warnings; medannot decides itself
    (refuse with a reason, or accept), so neither reaches the user's terminal."""
    log = logging.getLogger("nibabel.global")
    level, propagate = log.level, log.propagate
    log.setLevel(logging.CRITICAL + 1)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
        log.propagate = propagate


@dataclass(frozen=True)
class _Head:
    """A checked NIfTI header: nibabel's object, where the voxels start and how many bytes they take."""

    header: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    nbytes: int


def _raw_header(stream: IO[bytes], where: Path) -> tuple[bytes, str, int]:
    """The header bytes (348 or 540), the byte order and the NIfTI version, read from ``stream``."""
    raw = read_exactly(stream, _NIFTI1, str(where))
    for order in ("<", ">"):
        size = struct.unpack(order + "i", raw[:4])[0]
        if size == _NIFTI1:
            return raw, order, 1
        if size == _NIFTI2:
            return raw + read_exactly(stream, _NIFTI2 - _NIFTI1, str(where)), order, 2
    raise InputError(f"not a NIfTI file (the header size field holds {struct.unpack('<i', raw[:4])[0]}, not 348 or 540); "
                     "the file is damaged or not NIfTI", where)


def _check_extensions(raw_ext: bytes, order: str, first: int, offset: int, where: Path) -> None:
    """Header extensions between the header and the voxels must each fit there (``esize`` >= 8 bytes)."""
    pos = 0
    end = offset - first
    while pos + 8 <= min(end, len(raw_ext)):
        esize, _ = struct.unpack(order + "ii", raw_ext[pos : pos + 8])
        if esize < 8 or pos + esize > end:
            raise InputError(f"header extension at byte {first + pos} declares {esize} bytes, which do not fit between the header "
                             f"and the voxels (byte {offset}); the header is damaged", where)
        pos += esize


def _parse_header(raw: bytes, order: str, version: int, where: Path) -> _Head:
    """Check a NIfTI header's fields before anything else is read; nibabel parses what passes."""
    import nibabel as nib

    magic = raw[344:348] if version == 1 else raw[4:8]
    single = (b"n+1\x00", b"n+2\x00")
    if magic not in single:
        if magic in (b"ni1\x00", b"ni2\x00"):
            raise InputError("the header says its voxels are in a separate .img file (a .hdr/.img pair); convert it to a "
                             "single .nii file", where)
        raise InputError(f"not a NIfTI file (magic {magic!r}, expected {single[version - 1]!r}); the header is damaged", where)
    klass = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    try:
        with _quiet_nibabel():
            header = klass(raw, endianness=order, check=False)
            dims = [int(d) for d in header["dim"]]
            ndim = dims[0]
            if not 1 <= ndim <= 7:
                raise InputError(f"header declares {ndim} dimensions (dim[0]); expected 1 to 7: the header is damaged", where)
            shape = tuple(dims[1 : ndim + 1])
            if any(d < 1 for d in shape):
                raise InputError(f"header declares the shape {shape}; every axis needs at least one voxel", where)
            code = int(header["datatype"])
            try:
                dtype = np.dtype(header.get_data_dtype())
            except (KeyError, nib.spatialimages.HeaderDataError, TypeError, ValueError):
                raise InputError(f"header declares the voxel type code {code}, which NIfTI does not define; the header is damaged",
                                 where) from None
            if dtype.itemsize == 0 or (dtype.kind == "V" and dtype.fields is None):
                names = {1: "1-bit (DT_BINARY)", 1536: "128-bit float", 2048: "256-bit complex"}
                raise InputError(f"voxel type {names.get(code, f'code {code}')} is not one medannot reads; save the image as integers "
                                 "or float32", where)
            offset_value = float(header["vox_offset"])
    except InputError:
        raise
    except (nib.spatialimages.HeaderDataError, nib.spatialimages.HeaderTypeError, ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"damaged NIfTI header ({_one_line(exc)[:120]})", where) from None
    if int(header["sform_code"]) == 0:  # the qform (or pixdim alone) places the voxels: pixdim are their sizes
        sizes = [float(v) for v in header["pixdim"][1 : 1 + min(len(shape), 3)]]
        if not all(np.isfinite(v) and v > 0 for v in sizes):
            raise GeometryError(f"voxel sizes (pixdim) are {', '.join(f'{v:g}' for v in sizes)} mm; expected positive numbers: "
                                "the header is damaged", where)
    if offset_value == 0:  # "unset" (nibabel writes it so in memory): the voxels follow the header
        offset_value = float(len(raw) + 4)
    if not np.isfinite(offset_value) or offset_value != int(offset_value) or offset_value < len(raw) + 4:
        raise InputError(f"header says the voxels start at byte {offset_value:g}, inside the header; the header is damaged", where)
    offset = int(offset_value)
    try:  # after the offset check: nibabel's own check of an infinite vox_offset fails with an OverflowError
        with _quiet_nibabel():  # nibabel's documented fixes (qfac 0 -> 1, unknown xform codes -> 0, ...), as nib.load does
            header.check_fix(logger=_SILENT, error_level=40)
    except (nib.spatialimages.HeaderDataError, ValueError, OverflowError) as exc:
        raise InputError(f"damaged NIfTI header ({_one_line(exc)[:120]})", where) from None
    nbytes = declared_nbytes(shape, dtype.itemsize, str(where))
    return _Head(header, shape, dtype, offset, nbytes)


def _source(path: Path | None, blob: bytes | None) -> tuple[IO[bytes], int]:
    """A binary stream over the file (regular files only) or the bytes, and its size."""
    if blob is not None:
        return io.BytesIO(blob), len(blob)
    if path is None:
        raise InputError("nothing to read: give a NIfTI file or its bytes", None)
    fh = open_regular(path)
    return fh, os.fstat(fh.fileno()).st_size


def _read_checked(where: Path, blob: bytes | None, label: bool) -> tuple[_Head, bytes]:
    """Header checked, declared size checked against the limits, then exactly the file's bytes up to the end of
    the voxels (a gzip stream is inflated with a cap and read to its end, so its CRC is verified)."""
    fh, size = _source(None if blob is not None else where, blob)
    with fh:
        gz = fh.read(2) == GZIP_MAGIC
        fh.seek(0)
        if not gz and where.name.lower().endswith(".gz"):
            raise InputError("not a gzip file although it is named .nii.gz; expected a compressed NIfTI image", where)
        limits = read_limits()
        cap = limits.max_image_bytes + _NIFTI2 + (64 << 20) + _TRAILING
        stream: IO[bytes] = BoundedGzipReader(fh, InflateLimits(cap), size, str(where)) if gz else fh  # type: ignore[assignment]
        try:
            raw, order, version = _raw_header(stream, where)
            head = _parse_header(raw, order, version, where)
            check_allocation(where, head.nbytes, "NIfTI image", size if gz else None, label)
            total = head.offset + head.nbytes
            if not gz and total > size:
                raise InputError(f"file is truncated: header declares {head.shape} voxels needing {total} bytes, the file has {size}",
                                 where)
            rest = read_exactly(stream, total - len(raw), str(where))
            if gz:
                extra = 0
                while chunk := stream.read(1 << 20):
                    extra += len(chunk)
                    if extra > _TRAILING:
                        raise InputError(f"holds more data than its header declares ({format_bytes(total)}); the file is damaged "
                                         "or hides more data than it says", where)
        except InputError as exc:
            if exc.path is None:  # io.bounded names the input in its text
                text = exc.reason[len(str(where)) + 2 :] if exc.reason.startswith(f"{where}: ") else exc.reason
                if "ends after" in text:
                    text = f"the file is truncated: {text}"
                raise InputError(text, where) from None
            raise
        except OSError as exc:
            raise InputError(f"cannot read the file ({exc.strerror or _one_line(exc)})", where) from None
    data = raw + rest
    if version == 1 and data[348:349] != b"\x00":
        _check_extensions(data[352 : head.offset], order, 352, head.offset, where)
    return head, data


def _voxels(head: _Head, data: bytes, where: Path) -> np.ndarray:
    """The voxel array (Fortran order, as stored) with the header's scaling applied."""
    n = int(np.prod(head.shape))
    if head.dtype.kind == "c":
        raise InputError(f"voxels are complex numbers ({head.dtype}); medannot reads real-valued images: save the magnitude", where)
    dtype = head.dtype.newbyteorder(head.header.endianness) if head.dtype.kind not in "V" else head.dtype
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=head.offset).reshape(head.shape, order="F")
    if arr.dtype.fields is not None:  # RGB24 / RGBA32: colour channels become the last axis
        arr = np.stack([arr[name] for name in (arr.dtype.names or ())[:3]], axis=-1)
        return arr
    # The stored fields, not nibabel's get_slope_inter: it reads an infinite slope as "no scaling" (the voxels would be
    # read unscaled, silently) and fails on a non-finite intercept with its own exception.
    slope, inter = float(head.header["scl_slope"]), float(head.header["scl_inter"])
    if slope == 0 or np.isnan(slope):  # NIfTI's "no scaling" (0; NaN as some writers put it): the intercept is unused
        return arr
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise InputError(f"header scales the voxels by {slope:g} and adds {inter:g} (scl_slope, scl_inter); the values would not be "
                         "finite: the header is damaged", where)
    with np.errstate(over="ignore", invalid="ignore"):  # values past float32's range become inf: refused by the caller's check
        out = arr.astype(np.float32)
        out *= np.float32(slope)
        out += np.float32(inter)
    return out


def _check_affine(affine: np.ndarray, where: Path) -> None:
    """A finite affine with voxel sizes and an origin a scanner can produce."""
    if not np.all(np.isfinite(affine)):
        raise GeometryError("the header's voxel-to-world transform (qform/sform or pixdim) is not finite; the header is damaged", where)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < _MIN_SPACING_MM) or np.any(spacing > _MAX_SPACING_MM):
        raise GeometryError(f"the header gives voxel sizes of {', '.join(f'{v:.3g}' for v in spacing)} mm; expected "
                            f"{_MIN_SPACING_MM:g} to {_MAX_SPACING_MM:g} mm: the header is damaged", where)
    if np.any(np.abs(affine[:3, 3]) > _MAX_ORIGIN_MM):
        raise GeometryError(f"the header places the image {np.max(np.abs(affine[:3, 3])):.3g} mm from the origin; the header is damaged",
                            where)


def read_nifti(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read a NIfTI file as a 3D image.

    The header is checked before any voxel is read (fields, shape, voxel type, where the voxels start, header
    extensions) and its declared size against :func:`medannot.io.limits.read_limits` (size, and ratio to the
    compressed size of a ``.nii.gz``). A gzip stream is inflated with a cap and read to its end, so a changed
    byte fails its CRC; a file holding fewer voxels than declared is refused; intensities must be finite.

    Args:
        path: ``.nii`` or ``.nii.gz`` file, or its bytes (gzipped or not: told by the gzip magic number).
        kind: ``"intensity"`` (default) or ``"label"``; labels get an unsigned integer dtype.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        Image of shape ``(C, X, Y, Z)`` in RAS mm (C = 4th NIfTI axis, 1 for 3D files; 3 for RGB voxels).
        Integer data without scaling keep their dtype; scaled or float64 data become float32.

    Raises:
        InputError: Missing, empty, unreadable, truncated or corrupt file; a FIFO or device; over the size limits;
            more than 4 non-trivial axes; complex voxels; NaN or infinite intensities; non-integer values when
            ``kind="label"``.
        GeometryError: A non-finite, sheared or singular affine, or voxel sizes / positions no scanner gives.
    """
    kind = parse_kind(kind)
    if isinstance(path, (bytes, bytearray, memoryview)):
        blob: bytes | None = bytes(path)
        p = Path(name or "<bytes>.nii")
        if not blob:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", p)
    else:
        p, _ = check_readable_file(path)
        blob = None
    head, data = _read_checked(p, blob, kind is ImageKind.LABEL)
    del blob
    shape = head.shape
    data_arr = _voxels(head, data, p)
    if data_arr.ndim == 5 and shape[3] == 1:  # NIfTI vector images: (X, Y, Z, 1, C)
        data_arr = data_arr[:, :, :, 0, :]
    while data_arr.ndim > 4 and data_arr.shape[-1] == 1:
        data_arr = data_arr[..., 0]
    if data_arr.ndim == 1:
        data_arr = data_arr[:, None, None]
    elif data_arr.ndim == 2:
        data_arr = data_arr[:, :, None]
    if data_arr.ndim == 3:
        arr = data_arr[None]
    elif data_arr.ndim == 4:
        arr = np.moveaxis(data_arr, -1, 0)
    else:
        raise InputError(f"expected a 3D or 4D NIfTI image, received shape {shape}; split it first", p)
    if kind is ImageKind.LABEL:
        arr = to_label_array(arr, p)
    else:
        bad = count_nonfinite(arr)
        if bad:
            raise InputError(f"{bad} of {arr.size} voxel values are NaN or infinite; medannot needs finite intensities: replace them "
                             "(e.g. by 0) and save the image again", p)
        if arr.dtype == np.float64 or arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        elif arr.dtype == bool:
            arr = arr.astype(np.uint8)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    del data, data_arr
    import nibabel as nib

    hdr = head.header
    with _quiet_nibabel():
        try:
            affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError, nib.spatialimages.HeaderDataError) as exc:
            raise GeometryError(f"the header's qform is not a rotation ({_one_line(exc)[:80]}); the header is damaged", p) from None
    _check_affine(affine, p)
    try:
        geometry = Geometry.from_affine(affine)
    except GeometryError as exc:
        raise GeometryError(exc.reason, p) from None
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    meta = {
        "source": str(p),
        "format": "nifti",
        "nifti_qform_code": qcode,
        "nifti_sform_code": scode,
    }
    descrip = hdr["descrip"].tobytes().split(b"\x00")[0].decode("latin-1").strip()
    if descrip:
        meta["description"] = descrip
    return Image(arr, geometry, kind, meta)


def _embed_2d(geometry: Geometry) -> np.ndarray:
    aff2 = geometry.affine
    aff = np.eye(4)
    aff[:2, :2] = aff2[:2, :2]
    aff[:2, 3] = aff2[:2, 2]
    return aff


def _data_for_writing(image: Image) -> np.ndarray:
    arr = image.array
    if image.ndim == 2:
        arr = arr[..., None]
    arr = storable_array(arr, image.is_label, "NIfTI")
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)


def _xform_codes(meta: dict) -> tuple[int, int]:
    """qform and sform codes kept as they came (``meta`` of an image read from NIfTI, 0 included), else scanner (1)
    and aligned (2)."""
    codes = []
    for key, default in (("nifti_qform_code", 1), ("nifti_sform_code", 2)):
        value = meta.get(key)
        codes.append(int(value) if isinstance(value, (int, np.integer)) and 0 <= int(value) <= 4 else default)
    return codes[0], codes[1]


def write_nifti(image: Image, path: str | Path) -> Path:
    """Write an image to ``.nii`` / ``.nii.gz`` atomically.

    A 2D image is stored as a single-slice 3D volume (slice spacing 1 mm); several channels
    become the 4th axis. qform and sform hold the same affine; their codes are kept as they came
    when the image was read from NIfTI (``meta["nifti_qform_code"]``/``["nifti_sform_code"]``, 0 included; both 0
    only where the header's default placement still gives the affine), else scanner (1) for the qform and aligned
    (2) for the sform.

    Args:
        image: The image (intensity or label).
        path: Output file; must end in ``.nii`` or ``.nii.gz``.

    Returns:
        The written path.

    Raises:
        OutputError: Wrong suffix, unsupported dtype, or the file cannot be written.
        InputError: Negative labels.
    """
    import nibabel as nib

    p = Path(path)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        raise OutputError("expected a .nii or .nii.gz file name for NIfTI output", p)
    data = _data_for_writing(image)
    affine = _embed_2d(image.geometry) if image.ndim == 2 else image.geometry.affine
    nimg = nib.Nifti1Image(data, affine)
    hdr = nimg.header
    qcode, scode = _xform_codes(image.meta)
    nimg.set_qform(affine, code=qcode)
    nimg.set_sform(affine, code=scode)
    if qcode == scode == 0 and not np.allclose(hdr.get_base_affine(), affine, atol=1e-5):
        nimg.set_qform(affine, code=1)  # 'unknown' would lose where the voxels are: scanner, as for other sources
        nimg.set_sform(affine, code=2)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_data_dtype(data.dtype)
    if image.is_label:
        hdr.set_intent("label")
    hdr["cal_min"], hdr["cal_max"] = 0, 0
    try:
        with atomic_path(p) as tmp:
            nib.save(nimg, tmp)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write NIfTI ({_one_line(exc)}); check the folder is writable and has space", p) from exc
    return p
