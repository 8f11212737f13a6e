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

import gzip
import io
import struct
import zlib
from pathlib import Path

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io._common import (
    check_allocation,
    check_readable_file,
    label_dtype_for_writing,
    parse_kind,
    to_label_array,
)
from medannot.io.atomic import atomic_path

__all__ = ["read_nifti", "write_nifti"]

# gzip (deflate) cannot compress better than ~1032:1; a header declaring more data than
# that is corrupt, and is refused before anything is allocated.
_MAX_DEFLATE_RATIO = 1100

_XFORM_CODES = {"unknown": 0, "scanner": 1, "aligned": 2, "talairach": 3, "mni": 4}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _load_header(path: Path, head: bytes):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    gz = path.name.lower().endswith(".gz")
    if gz and head[:2] != b"\x1f\x8b":
        raise InputError("not a gzip file although it is named .nii.gz; expected a compressed NIfTI image", path)
    try:
        img = nib.load(path)
    except (ImageFileError, OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile) as exc:
        raise InputError(f"not a readable NIfTI file ({_one_line(exc)})", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"expected a NIfTI image, nibabel read it as {type(img).__name__}", path)
    return img


def _load_header_bytes(data: bytes, where: Path):
    """A NIfTI image over bytes held in memory (gzipped or not), voxels not read yet."""
    import nibabel as nib

    gz = data[:2] == b"\x1f\x8b"
    try:
        stream: io.IOBase = gzip.GzipFile(fileobj=io.BytesIO(data)) if gz else io.BytesIO(data)
        head = stream.read(4)
        stream.seek(0)
        if len(head) < 4:
            raise InputError("not a readable NIfTI file (shorter than its header)", where)
        sizeof_hdr = {struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]}
        klass = nib.Nifti2Image if 540 in sizeof_hdr else nib.Nifti1Image
        return klass.from_stream(stream), gz
    except InputError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"not a readable NIfTI file ({_one_line(exc)})", where) from None


def _check_declared_size(path: Path, img, size: int | None = None, gz: bool | None = None) -> None:
    hdr = img.header
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 0 or any(s < 1 for s in shape):
        raise InputError(f"NIfTI header declares an empty shape {shape}", path)
    itemsize = np.dtype(hdr.get_data_dtype()).itemsize
    nbytes = int(np.prod(shape, dtype=np.float64)) * itemsize
    check_allocation(path, nbytes, "NIfTI image")
    size = path.stat().st_size if size is None else size
    offset = int(hdr.get_data_offset())
    if path.name.lower().endswith(".gz") if gz is None else gz:
        if nbytes > size * _MAX_DEFLATE_RATIO:
            raise InputError(
                f"header declares {shape} voxels ({nbytes} bytes) but the compressed file has only {size} bytes; "
                "the file is truncated or its header is corrupt",
                path,
            )
    elif offset + nbytes > size:
        raise InputError(
            f"file is truncated: header declares {shape} voxels needing {offset + nbytes} bytes, the file has {size}",
            path,
        )


def read_nifti(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read a NIfTI file as a 3D image.

    Args:
        path: ``.nii`` or ``.nii.gz`` file, or its bytes (gzipped or not: told by the gzip magic number).
        kind: ``"intensity"`` (default) or ``"label"``; labels get an unsigned integer dtype.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        Image of shape ``(C, X, Y, Z)`` in RAS mm (C = 4th NIfTI axis, 1 for 3D files).
        Integer data without scaling keep their dtype; scaled or float64 data become float32.

    Raises:
        InputError: Missing, empty, unreadable, truncated or corrupt file; more than 4 non-trivial axes;
            non-integer values when ``kind="label"``.
        GeometryError: A sheared or singular affine.
    """
    kind = parse_kind(kind)
    if isinstance(path, (bytes, bytearray, memoryview)):
        blob = bytes(path)
        p = Path(name or "<bytes>.nii")
        if not blob:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", p)
        img, gz = _load_header_bytes(blob, p)
        _check_declared_size(p, img, len(blob), gz)
    else:
        p, head = check_readable_file(path)
        img = _load_header(p, head)
        _check_declared_size(p, img)
    shape = tuple(int(s) for s in img.shape)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, MemoryError) as exc:
        raise InputError(f"cannot read the voxel data, the file is probably truncated ({_one_line(exc)})", p) from None
    data = np.asarray(data)
    if data.ndim == 5 and shape[3] == 1:  # NIfTI vector images: (X, Y, Z, 1, C)
        data = data[:, :, :, 0, :]
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 1:
        data = data[:, None, None]
    elif data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 3:
        arr = data[None]
    elif data.ndim == 4:
        arr = np.moveaxis(data, -1, 0)
    else:
        raise InputError(f"expected a 3D or 4D NIfTI image, received shape {shape}; split it first", p)
    if kind is ImageKind.LABEL:
        arr = to_label_array(arr, p)
    elif arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    try:
        geometry = Geometry.from_affine(img.affine)
    except GeometryError as exc:
        raise GeometryError(exc.reason, p) from None
    hdr = img.header
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
    if image.is_label:
        arr = arr.astype(label_dtype_for_writing(arr), copy=False)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32, copy=False)
    elif arr.dtype in (np.int64, np.uint64):
        info = np.iinfo(np.int32)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            arr = arr.astype(np.float32)
        else:
            arr = arr.astype(np.int32)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise OutputError(f"cannot store dtype {arr.dtype} in NIfTI; expected integers or floats")
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
