"""InVesalius 3 projects (``.inv3``): the image volume of the project, read without unpacking it to disk.

An ``.inv3`` file is a gzipped tar holding ``main.plist`` (the project: modality, spacing, the volume's file,
shape and dtype) and the volume as raw C-ordered values (``matrix.dat``, indexed ``(slice, row, column)``, HU
for CT). Masks and surfaces in the project are not read.

The volume becomes a 3D image ``(1, column, row, slice)`` (the layout of DICOM series in medannot) with the
project's spacing ``(x, y, z)`` mm. InVesalius stores no patient orientation or origin: the direction is the
identity (voxel axes taken as RAS axes) and the origin 0, as ``meta["geometry"]`` says; place it yourself
before comparing it with another image in world coordinates.

Safety: the declared volume size is checked against :data:`medannot.io._common.MAX_IMAGE_BYTES`, against the tar
member's size, and against what gzip can expand the file to, before any voxel is read.
"""

from __future__ import annotations

import gzip
import io
import plistlib
import tarfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import InputError
from medannot.io._common import INV3_SUFFIXES, check_allocation, check_readable_file, parse_kind, to_label_array

__all__ = ["INV3_SUFFIXES", "read_inv3"]

_MAX_DEFLATE_RATIO = 1100  # gzip cannot compress better than ~1032:1
_MAX_PLIST_BYTES = 16 * 1024**2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, where: Path) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:
        raise InputError(f"project member {member.name!r} is not a file", where)
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"project member {member.name!r} is larger than declared ({limit} bytes)", where)
    return data


def _project(tar: tarfile.TarFile, where: Path) -> tuple[dict[str, Any], dict[str, tarfile.TarInfo]]:
    members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
    if "main.plist" not in members:
        raise InputError("not an InVesalius project: main.plist is missing from the archive", where)
    plist = members["main.plist"]
    if plist.size > _MAX_PLIST_BYTES:
        raise InputError(f"main.plist is {plist.size} bytes; expected a small project description", where)
    try:
        meta = plistlib.loads(_member_bytes(tar, plist, plist.size, where))
    except (plistlib.InvalidFileException, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"main.plist is not a readable property list ({_one_line(exc)})", where) from None
    return meta, members


def read_inv3(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read the image volume of an InVesalius 3 project.

    Args:
        path: The ``.inv3`` file, or its bytes.
        kind: ``"intensity"`` (default) or ``"label"``.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        3D image ``(1, columns, rows, slices)`` in the project's units (HU for CT), spacing from the project,
        identity direction (see the module docstring); ``meta["Modality"]`` from the project.

    Raises:
        InputError: Not a gzipped tar, no ``main.plist``, a volume whose declared shape / dtype / size is missing,
            impossible or does not match the stored bytes.
    """
    kind = parse_kind(kind)
    if isinstance(path, (bytes, bytearray, memoryview)):
        data: bytes | None = bytes(path)
        where = Path(name or "<bytes>.inv3")
        if not data:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", where)
        size = len(data)
    else:
        where, _ = check_readable_file(path)
        data, size = None, where.stat().st_size
    stream: BinaryIO = io.BytesIO(data) if data is not None else open(where, "rb")
    try:
        with stream, tarfile.open(fileobj=stream, mode="r:gz") as tar:
            meta, members = _project(tar, where)
            matrix = meta.get("matrix") if isinstance(meta, dict) else None
            try:
                shape = tuple(int(s) for s in matrix["shape"])  # type: ignore[index]
                dtype = np.dtype(str(matrix["dtype"])).newbyteorder("<")  # type: ignore[index]
                member = members[Path(str(matrix["filename"])).name]  # type: ignore[index]
                spacing = tuple(float(s) for s in meta["spacing"])
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"main.plist does not describe the volume (matrix shape, dtype, filename, spacing): {_one_line(exc)}",
                                 where) from None  # fmt: skip
            if len(shape) != 3 or min(shape) < 1 or len(spacing) != 3 or min(spacing) <= 0 or dtype.kind not in "iuf":
                raise InputError(f"main.plist declares a volume of shape {list(shape)}, dtype {dtype}, spacing {list(spacing)}; "
                                 "expected 3 positive sizes, a numeric dtype and 3 positive spacings", where)  # fmt: skip
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            check_allocation(where, nbytes, "InVesalius volume")
            if member.size != nbytes:
                raise InputError(f"the volume file holds {member.size} bytes, the project declares {shape} x {dtype} = {nbytes}", where)
            if nbytes > size * _MAX_DEFLATE_RATIO:
                raise InputError(f"the project declares {nbytes} bytes of voxels but the file has only {size}; it is corrupt", where)
            raw = _member_bytes(tar, member, nbytes, where)
    except InputError:
        raise
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        raise InputError(f"not a readable InVesalius project (a gzipped tar) ({_one_line(exc)})", where) from None
    if len(raw) != nbytes:
        raise InputError(f"the volume file ends after {len(raw)} of {nbytes} bytes; the project is truncated", where)
    vol = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))  # (slice, row, column)
    arr = vol.transpose(2, 1, 0)[None]  # (1, column, row, slice): no copy
    if kind is ImageKind.LABEL:
        arr = to_label_array(arr, where)
    geometry = Geometry(spacing=spacing)
    info = {"source": str(where), "format": "inv3", "geometry": "InVesalius stores no orientation: identity direction, origin 0"}
    if meta.get("modality"):
        info["Modality"] = str(meta["modality"])
    return Image(arr, geometry, kind, info)
