"""FreeSurfer MGH / MGZ volumes (``.mgh``, ``.mgz``) through nibabel.

nibabel decodes (``nibabel.freesurfer.MGHImage``); its affine is already RAS mm (vox2ras from ``delta``, ``Mdc``
and ``Pxyz_c``), so the image is read as the NIfTI reader reads NIfTI: array ``(C, i, j, k)`` in the file's index
order, a 4th axis (frames) as channels, labels as the smallest unsigned dtype, float64 as float32. Big-endian
voxels (MGH is big-endian) come back in native byte order.

Checks before anything is allocated, as for NIfTI: the fixed 90-byte header is read first (through
:class:`medannot.io.bounded.BoundedGzipReader` for ``.mgz``, so a damaged stream cannot inflate past it), the
declared size must fit the memory limit in force, an ``.mgz`` may not declare more than deflate can reach (~1032:1:
a forged header), and an ``.mgh`` must hold every declared byte. A file without a valid RAS orientation
(``goodRASFlag`` 0) gets nibabel's default (coronal, as FreeSurfer's ``conformed`` space) and says so in
``meta["orientation"]``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError
from medannot.io._checks import check_declared_size, check_world_affine, native_voxels
from medannot.io._common import MGH_SUFFIXES, check_readable_file, parse_kind
from medannot.io.bounded import BoundedGzipReader, InflateLimits, declared_nbytes, read_exactly

__all__ = ["MGH_SUFFIXES", "read_mgh"]


_DATA_OFFSET = 284
_HEADER_BYTES = 90


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fixed_header(stream, gz: bool, size: int, where: Path):
    """nibabel's MGH header of the first 90 bytes (no seek to the footer, so nothing else is inflated)."""
    from nibabel.freesurfer.mghformat import MGHError, MGHHeader
    from nibabel.spatialimages import HeaderDataError

    try:
        if gz:
            reader = BoundedGzipReader(stream, InflateLimits(max_bytes=_DATA_OFFSET), size, str(where))
            block = read_exactly(reader, _HEADER_BYTES, str(where))
        else:
            block = stream.read(_HEADER_BYTES)
    except InputError as exc:
        raise InputError(f"not a readable MGZ file ({exc.reason.removeprefix(str(where) + ': ')})", where) from None
    if len(block) < _HEADER_BYTES:
        raise InputError(f"not a readable MGH file (shorter than its {_HEADER_BYTES}-byte header)", where)
    try:
        return MGHHeader(block, check=True)
    except (MGHError, HeaderDataError, ValueError, KeyError, IndexError) as exc:
        raise InputError(f"not a readable MGH header ({_one_line(exc)})", where) from None


def _check_size(header, size: int, gz: bool, where: Path) -> tuple[int, ...]:
    dims = tuple(int(d) for d in header["dims"])
    if any(d < 1 for d in dims):
        raise InputError(f"MGH header declares an empty or negative shape {dims}; the header is damaged", where)
    try:
        itemsize = np.dtype(header.get_data_dtype()).itemsize
    except KeyError:
        raise InputError(f"MGH header declares an unknown voxel type {int(header['type'])}; expected uchar, short, int or float",
                         where) from None
    nbytes = declared_nbytes(dims, itemsize, str(where))
    check_declared_size(where, nbytes, "MGH volume", size if gz else None)
    if not gz and _DATA_OFFSET + nbytes > size:
        raise InputError(f"file is truncated: header declares {dims} voxels needing {_DATA_OFFSET + nbytes} bytes, the file has {size}", where)
    return dims


def read_mgh(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read a FreeSurfer ``.mgh`` / ``.mgz`` volume with nibabel.

    Args:
        path: The file, or its bytes (gzipped or not: told by the gzip magic number).
        kind: ``"intensity"`` (default) or ``"label"`` (e.g. ``aseg.mgz``); labels get an unsigned integer dtype.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        Image ``(C, X, Y, Z)`` in RAS mm (C = frames, 1 for a plain volume); ``meta["format"]`` is ``"mgh"``.

    Raises:
        InputError: Missing, empty, unreadable, truncated or forged file; non-integer values when ``kind="label"``.
        GeometryError: A sheared or singular affine.
    """
    import nibabel as nib

    kind = parse_kind(kind)
    if isinstance(path, (bytes, bytearray, memoryview)):
        blob = bytes(path)
        where = Path(name or "<bytes>.mgz")
        if not blob:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", where)
        gz, size = blob[:2] == b"\x1f\x8b", len(blob)
        header = _fixed_header(io.BytesIO(blob), gz, size, where)
    else:
        where, head = check_readable_file(path)
        gz, size = head[:2] == b"\x1f\x8b", where.stat().st_size
        if where.name.lower().endswith(".mgz") and not gz:
            raise InputError("not a gzip file although it is named .mgz; expected a compressed MGH volume", where)
        with open(where, "rb") as fh:
            header = _fixed_header(fh, gz, size, where)
        blob = None
    _check_size(header, size, gz, where)
    with np.errstate(over="ignore", invalid="ignore"):
        check_world_affine(header.get_affine(), where)  # before any voxel is read
    try:  # nibabel reads from a stream we close (nib.load of an .mgh leaves its file open)
        with (io.BytesIO(blob) if blob is not None else open(where, "rb")) as raw:
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            img = nib.MGHImage.from_stream(stream)
            data = np.asarray(img.dataobj)
            affine, good_ras = img.affine, int(img.header["goodRASFlag"])
    except (OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile, nib.filebasedimages.ImageFileError) as exc:
        text = _one_line(exc).replace(f" from {where}", "").replace(str(where), where.name)
        raise InputError(f"cannot read the voxel data, the file is probably truncated or corrupt ({text})", where) from None
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3:
        arr = data[None]
    elif data.ndim == 4:
        arr = np.moveaxis(data, -1, 0)
    else:
        raise InputError(f"expected a 3D or 4D MGH volume, received shape {data.shape}", where)
    arr = native_voxels(arr, kind, where)
    try:
        geometry = Geometry.from_affine(affine)
    except GeometryError as exc:
        raise GeometryError(exc.reason, where) from None
    meta = {"source": str(where), "format": "mgh"}
    if not good_ras:
        meta["orientation"] = "no valid RAS orientation in the file (goodRASFlag 0): FreeSurfer's default coronal orientation assumed"
    return Image(np.ascontiguousarray(arr), geometry, kind, meta)
