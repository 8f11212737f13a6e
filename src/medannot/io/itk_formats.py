"""NRRD (``.nrrd``, ``.nhdr`` + data file) and MetaImage (``.mha``, ``.mhd`` + data file) through SimpleITK.

The formats 3D Slicer, ITK-SNAP and grand-challenge.org use. SimpleITK decodes; this module only checks before
it does, and converts the result to medannot's conventions once, at the edge:

* **Geometry.** ITK's physical space is LPS; a 3D image becomes RAS mm (x and y negated), array ``(C, i, j, k)``
  in ITK's index order (as NIfTI). A 2D image (``dimension: 2`` / ``NDims = 2``) stays 2D like a picture: array
  ``(C, row, column)`` = ITK ``(y, x)``, medannot's 2D world axes are ITK's ``(y, x)`` (so an axis-aligned 2D MetaImage
  has the identity direction a PNG has), no LPS->RAS flip (a plane has no patient orientation). A 4D image whose
  4th axis does not mix with space has that axis as channels (as the NIfTI reader does); multi-component
  (vector, RGB) pixels are channels too. Sheared, singular or non-finite geometry is refused
  (:class:`~medannot.errors.GeometryError`) before any voxel is read.
* **Size.** The header is read first (SimpleITK ``ReadImageInformation``, after a bounded scan of the header text
  for where the data lie and how they are encoded). The declared voxels must fit the reader's limits
  (the memory limit in force, and for gzip data no more than deflate can reach, ~1032:1); raw data must be present in full (a truncated file is refused by
  name, not read as garbage); a MetaImage ``CompressedDataSize`` larger than the bytes present is refused (MetaIO
  would allocate it). Teem (NRRD) and MetaIO inflate only the declared bytes into the buffer they allocate and check
  no CRC, so compressed data are first inflated once, streamed and discarded, with a cap
  (:class:`medannot.io.bounded.BoundedGzipReader` for NRRD gzip): a damaged, truncated or padded stream is refused
  before SimpleITK reads it.
* **Detached data** (``.nhdr``, ``.mhd``): one data file, relative to the header's folder, that must be a regular
  file; multi-file lists (``LIST``, ``%d`` patterns) are refused with what to do. Bytes held in memory can only be
  the attached forms (``.nrrd``, ``.mha``): a header from an upload may not name a file on this machine.

Labels (``kind="label"``) get the smallest unsigned dtype; float64 intensities become float32 (as NIfTI).
Writing (:func:`write_itk`): ``.nrrd`` and ``.mha`` (attached, gzip-compressed), any image, with optional
key/value metadata (NRRD ``key:=value`` lines, e.g. 3D Slicer's segmentation fields).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import GeometryError, InputError, OutputError
from medannot.io._checks import MAX_ORIGIN_MM, check_declared_size, check_world_affine, native_voxels
from medannot.io._common import ITK_SUFFIXES, check_readable_file, parse_kind, storable_array
from medannot.io.atomic import atomic_path
from medannot.io.bounded import CHUNK, BoundedGzipReader, InflateLimits, declared_nbytes, format_bytes

__all__ = ["ITK_READ_SUFFIXES", "ITK_WRITE_SUFFIXES", "read_itk", "write_itk"]

ITK_READ_SUFFIXES = ITK_SUFFIXES
ITK_WRITE_SUFFIXES = (".nrrd", ".mha")
_MAX_HEADER = 1 << 20
"""Bytes of header text scanned (1 MiB): a real header is a few hundred bytes."""
_TRAILING = 4096
"""Inflated bytes allowed past the declared data (padding); more is refused as hidden data."""

# SimpleITK pixel IDs -> bytes per component (complex types refused)
_ITEMSIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 8, 7: 8, 8: 4, 9: 8, 12: 1, 13: 1, 14: 2, 15: 2, 16: 4, 17: 4,
             18: 8, 19: 8, 20: 4, 21: 8, 22: 1, 23: 2, 24: 4, 25: 8}  # fmt: skip


def _one_line(exc: BaseException) -> str:
    """The last informative line of an ITK exception (they are long and multi-line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = " ".join(lines[-2:]) if lines else type(exc).__name__
    return text.replace("sitk::ERROR: ", "")[-300:]


@dataclass(frozen=True)
class _DataLayout:
    """Where a header says its voxels are, and how they are stored.

    Attributes:
        format: ``"nrrd"`` or ``"metaimage"``.
        encoding: ``"raw"``, ``"gzip"`` (deflate: NRRD gzip, MetaImage CompressedData), ``"bzip2"``, ``"ascii"``,
            ``"hex"`` or another name (checked only against the memory limit).
        data_file: The detached data file (None: attached after the header).
        source: The file holding the data (the header's own file, or ``data_file``).
        offset: Where the data start in ``source`` (bytes).
        available: Bytes present for the data from ``offset`` on.
        compressed_size: MetaImage ``CompressedDataSize`` when given.
    """

    format: str
    encoding: str
    data_file: Path | None
    source: Path
    offset: int
    available: int
    compressed_size: int | None = None


def _header_text(path: Path, magic: bytes, end_marker: bytes | None) -> tuple[str, int | None]:
    """The header text (up to ``end_marker`` or the end of the file) and where the attached data start."""
    with open(path, "rb") as fh:
        blob = fh.read(_MAX_HEADER)
    if not blob.startswith(magic):
        raise InputError(f"not a {magic.decode().strip()} file (it does not start with {magic.decode().strip()!r})", path)
    if end_marker is not None:
        for marker in (end_marker, end_marker.replace(b"\n", b"\r\n")):
            at = blob.find(marker)
            if at >= 0:
                return blob[:at].decode("latin-1"), at + len(marker)
    if len(blob) >= _MAX_HEADER:
        raise InputError(f"no end of the header within its first {format_bytes(_MAX_HEADER)}; the file is not an image header", path)
    return blob.decode("latin-1"), None


def _data_file(header: Path, name: str, what: str) -> tuple[Path, int]:
    """The detached data file a header names (relative to the header's folder) and its size."""
    name = name.strip()
    if not name:
        raise InputError(f"the header names an empty {what}", header)
    target = Path(name) if os.path.isabs(name) else header.parent / name
    try:
        mode = os.stat(target).st_mode
    except ValueError:  # a NUL byte in the name
        raise InputError(f"its {what} name {name[:80]!r} is not a file name; the header is damaged", header) from None
    except FileNotFoundError:
        raise InputError(f"its {what} {name!r} is missing; keep the header and its data file together in one folder", header) from None
    except OSError as exc:
        raise InputError(f"its {what} {name!r} cannot be examined ({exc.strerror or exc})", header) from None
    if not stat.S_ISREG(mode):
        raise InputError(f"its {what} {name!r} is not a regular file (a folder, FIFO or device); point it at the data file", header)
    return target, os.stat(target).st_size


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)", re.IGNORECASE)


def _check_geometry_text(path: Path, fields: dict[str, str], keys: tuple[str, ...]) -> None:
    """Refuse a geometry field holding NaN, infinity or a number past 1e7 (mm): ITK would quietly replace some of them
    (a spacing whose square overflows becomes 1 mm), so the header text is checked before ITK reads it."""
    for key in keys:
        for token in _NUMBER.findall(fields.get(key, "")):
            value = float(token)
            if not np.isfinite(value) or abs(value) > MAX_ORIGIN_MM:
                raise GeometryError(f"the header's geometry ({key}) holds the value {token}; expected finite millimetres below "
                                    f"{MAX_ORIGIN_MM:g}: the header is damaged", path)


def _nrrd_layout(path: Path, head: bytes, attached_only: bool) -> _DataLayout:
    text, data_at = _header_text(path, b"NRRD000", b"\n\n")
    fields: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        kv, fd = line.find(":="), line.find(": ")
        if not line.strip() or line.startswith("#") or (kv >= 0 and (fd < 0 or kv < fd)):
            continue  # comments and key:=value pairs
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    _check_geometry_text(path, fields, ("spacedirections", "spacings", "spaceorigin", "thicknesses"))
    encoding = {"gz": "gzip", "bz2": "bzip2", "txt": "ascii", "text": "ascii"}.get(fields.get("encoding", "").lower(),
                                                                                  fields.get("encoding", "").lower())
    if not encoding:
        raise InputError("the NRRD header has no 'encoding' field; the file is damaged", path)
    name = fields.get("datafile")
    if name is None:
        if data_at is None:
            raise InputError("the NRRD header is not followed by data (no blank line) and names no 'data file'; "
                             "the file is truncated, or a detached header lost its data file", path)
        return _DataLayout("nrrd", encoding, None, path, data_at, path.stat().st_size - data_at)
    if attached_only:
        raise InputError("a detached NRRD header (it names a 'data file') cannot be read from memory; "
                         "save it as one .nrrd file (header and data together)", path)
    first = name.split()[0] if name.split() else ""
    if first.upper() == "LIST" or "%" in name:
        raise InputError(f"multi-file NRRD ('data file: {name[:80]}') is not supported; save the volume as one .nrrd file "
                         "(e.g. in 3D Slicer)", path)
    target, size = _data_file(path, name, "NRRD data file")
    skip = fields.get("byteskip", "0")
    offset = int(skip) if encoding == "raw" and skip.isdigit() else 0
    if fields.get("lineskip", "0") not in ("", "0"):
        offset = -1  # lines skipped first: the offset is not known without reading them (the size check is loose)
    return _DataLayout("nrrd", encoding, target, target, offset, size - max(offset, 0))


def _meta_layout(path: Path, head: bytes, attached_only: bool) -> _DataLayout:
    with open(path, "rb") as fh:
        blob = fh.read(_MAX_HEADER)
    fields: dict[str, str] = {}
    data_at = None
    pos = 0
    for raw in blob.splitlines(keepends=True):
        pos += len(raw)
        key, sep, value = raw.decode("latin-1").partition("=")
        if not sep:
            continue
        key = key.strip().lower()
        fields[key] = value.strip()
        if key == "elementdatafile":
            data_at = pos
            break
    if "ndims" not in fields and "objecttype" not in fields:
        raise InputError("not a MetaImage file (no ObjectType or NDims line)", path)
    if data_at is None:
        raise InputError("the MetaImage header has no ElementDataFile line (it must be the last header line); "
                         "the file is truncated or not a MetaImage", path)
    _check_geometry_text(path, fields, ("elementspacing", "elementsize", "offset", "position", "origin", "transformmatrix",
                                        "rotation", "orientation"))
    compressed = fields.get("compresseddata", "false").lower() in ("true", "1", "yes")
    declared_compressed = fields.get("compresseddatasize")
    csize = int(declared_compressed) if declared_compressed and declared_compressed.isdigit() else None
    name = fields["elementdatafile"]
    encoding = "gzip" if compressed else "raw"
    if name.upper() == "LOCAL":
        return _DataLayout("metaimage", encoding, None, path, data_at, path.stat().st_size - data_at, csize)
    if attached_only:
        raise InputError("a MetaImage header with a separate ElementDataFile cannot be read from memory; "
                         "save it as one .mha file (header and data together)", path)
    if name.upper().startswith("LIST") or "%" in name:
        raise InputError(f"multi-file MetaImage (ElementDataFile = {name[:80]}) is not supported; save the volume as one "
                         ".mha file", path)
    target, size = _data_file(path, name, "MetaImage data file")
    skip = fields.get("headersize", "0")
    offset = int(skip) if skip.isdigit() else 0
    return _DataLayout("metaimage", encoding, target, target, offset, size - offset, csize)


def _layout(path: Path, head: bytes, attached_only: bool) -> _DataLayout:
    """NRRD for ``.nrrd`` / ``.nhdr`` (and, from memory, the ``NRRD`` magic), else MetaImage."""
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        return _nrrd_layout(path, head, attached_only)
    return _meta_layout(path, head, attached_only)


def _check_data_size(path: Path, layout: _DataLayout, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse before allocating: over the memory limit, raw data shorter than declared, forged compressed sizes;
    then inflate compressed data once, streamed and discarded, so a damaged, truncated or padded stream is refused
    by name (teem and MetaIO read only the declared bytes and check no CRC)."""
    what = str(path)
    nbytes = declared_nbytes(shape, itemsize, what)
    where = f"its data file {layout.data_file.name}" if layout.data_file is not None else "the file"
    available = max(layout.available, 0)
    compressed = layout.encoding in ("gzip", "bzip2")
    if layout.encoding == "gzip" and layout.compressed_size is not None:
        if layout.compressed_size > available:
            raise InputError(f"the data are truncated: the header declares {layout.compressed_size} compressed bytes, "
                             f"{where} holds {available}", path)
        available = layout.compressed_size
    check_declared_size(path, nbytes, f"{layout.format.upper() if layout.format == 'nrrd' else 'MetaImage'} image",
                        available if layout.encoding == "gzip" else None)
    if compressed and available <= 0:
        raise InputError(f"no compressed data after the header; {where} is truncated", path)
    if layout.encoding == "raw" and available < nbytes:
        raise InputError(f"the data are truncated: the header declares {shape} voxels ({nbytes} bytes), {where} holds "
                         f"{available}", path)
    if layout.encoding == "hex" and available < 2 * nbytes:
        raise InputError(f"the data are truncated: {shape} voxels in hex need {2 * nbytes} characters, {where} holds {available}", path)
    if layout.encoding == "ascii" and available < int(np.prod(shape, dtype=np.float64)):
        raise InputError(f"the data are truncated: {shape} values in text, {where} holds only {available} characters", path)
    if layout.encoding == "gzip" and layout.offset >= 0:
        _verify_deflate(path, layout, nbytes, available, where)


def _verify_deflate(path: Path, layout: _DataLayout, nbytes: int, compressed: int, where: str) -> None:
    """Inflate the data once with a cap (NRRD: gzip members through :class:`medannot.io.bounded.BoundedGzipReader`;
    MetaImage: one zlib stream), counting bytes: exactly ``nbytes`` (plus a little padding) or a one-line refusal."""
    cap = nbytes + _TRAILING
    produced = 0
    with open(layout.source, "rb") as fh:
        fh.seek(layout.offset)
        if layout.format == "nrrd":
            reader = BoundedGzipReader(fh, InflateLimits(max_bytes=cap), compressed, str(path))
            try:
                while chunk := reader.read(CHUNK * 16):
                    produced += len(chunk)
            except InputError as exc:
                text = exc.reason.removeprefix(f"{path}: ")
                if "inflates to more than" in text:
                    text = f"the compressed data hold more than the {nbytes} bytes the header declares; the file is damaged or hides data"
                raise InputError(f"{text} ({where})", path) from None
        else:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
            left = compressed
            try:
                while left > 0 and not inflater.eof:
                    data = fh.read(min(CHUNK, left))
                    if not data:
                        break
                    left -= len(data)
                    while data and not inflater.eof:
                        out = inflater.decompress(data, CHUNK * 16)
                        produced += len(out)
                        if produced > cap:
                            raise InputError(f"the compressed data hold more than the {nbytes} bytes the header declares; "
                                             f"the file is damaged or hides data ({where})", path)
                        data = inflater.unconsumed_tail
            except zlib.error as exc:
                raise InputError(f"damaged compressed data ({exc}) in {where}; send an intact file", path) from None
            if not inflater.eof and produced >= nbytes:
                raise InputError(f"the compressed data do not end where the header says; {where} is damaged", path)
    if produced < nbytes:
        raise InputError(f"the data are truncated: the header declares {nbytes} bytes, the compressed data in {where} "
                         f"hold {produced}", path)


def _geometry(path: Path, dim: int, spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]) -> tuple[Geometry, bool]:
    """medannot geometry of an ITK header (see the module docstring), and whether a 4th axis is channels."""
    sp = np.asarray(spacing, dtype=np.float64)
    org = np.asarray(origin, dtype=np.float64)
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)
    if np.all(np.isfinite(sp)) and np.any(sp <= 0):
        raise GeometryError(f"spacing must be positive, the header says {sp.tolist()} mm; the header is damaged", path)
    if not (np.all(np.isfinite(sp)) and np.all(np.isfinite(org)) and np.all(np.isfinite(d))):
        raise GeometryError(f"non-finite geometry in the header (spacing {sp.tolist()}, origin {org.tolist()}); the header is damaged", path)
    if dim == 4:
        if np.any(d[:3, 3] != 0) or np.any(d[3, :3] != 0):
            raise InputError("the 4th axis of this 4D image mixes with space; expected a 3D image with a channel or time axis", path)
        dim, sp, org, d = 3, sp[:3], org[:3], d[:3, :3]
    aff = np.eye(dim + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        aff[:dim, :dim] = d * sp[None, :]
    aff[:dim, dim] = org
    check_world_affine(aff, path)
    if dim == 3:
        aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff  # LPS -> RAS
    else:
        swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        aff = swap @ aff @ swap  # world and index axes (x, y) -> (row, column) = (y, x)
    try:
        return Geometry.from_affine(aff), len(spacing) == 4
    except GeometryError as exc:
        raise GeometryError(exc.reason, path) from None


def _read_path(path: Path, kind: ImageKind, head: bytes, attached_only: bool, label: Path) -> Image:
    import SimpleITK as sitk

    layout = _layout(path, head, attached_only)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"not a readable {layout.format.upper() if layout.format == 'nrrd' else 'MetaImage'} header ({_one_line(exc)})", label) from None
    dim = int(reader.GetDimension())
    size = tuple(int(s) for s in reader.GetSize())
    components = int(reader.GetNumberOfComponents())
    pixel_id = int(reader.GetPixelID())
    if dim not in (2, 3, 4):
        raise InputError(f"expected a 2D, 3D or 4D image, the header declares {dim} dimensions; split it first", label)
    if pixel_id not in _ITEMSIZE:
        raise InputError(f"pixel type {sitk.GetPixelIDValueAsString(pixel_id)!r} is not supported; expected integers or floats", label)
    if any(s < 1 for s in size):
        raise InputError(f"the header declares an empty shape {size}", label)
    _check_data_size(label, layout, (*size, components), _ITEMSIZE[pixel_id])
    geometry, time_channels = _geometry(label, dim, reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    if time_channels and components > 1:
        raise InputError(f"a 4D image of {components}-component pixels cannot be one channel-first image; split it first", label)
    try:
        itk_image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read the voxel data, the file is probably truncated or corrupt ({_one_line(exc)})", label) from None
    view = sitk.GetArrayViewFromImage(itk_image)  # (z, y, x[, c]) / (y, x[, c]) / (t, z, y, x)
    if components > 1:
        view = np.moveaxis(view, -1, 0)
    elif not time_channels:
        view = view[None]
    # spatial axes to ITK index order (x, y, z); 2D stays (y, x) = (row, column)
    nsp = view.ndim - 1
    order = [0, *range(nsp, 0, -1)] if nsp == 3 else [0, 1, 2]
    arr = np.array(np.transpose(view, order), order="C", copy=True)  # always a copy: the view dies with itk_image
    del view, itk_image
    arr = native_voxels(arr, kind, label)
    meta: dict[str, Any] = {"source": str(label), "format": layout.format}
    if layout.encoding != "raw":
        meta["encoding"] = layout.encoding
    return Image(arr, geometry, kind, meta)


def read_itk(path: str | Path | bytes, kind: ImageKind | str | None = None, *, name: str | None = None) -> Image:
    """Read an NRRD or MetaImage file with SimpleITK.

    Args:
        path: ``.nrrd`` / ``.nhdr`` (with its data file) / ``.mha`` / ``.mhd`` (with its data file), or the bytes
            of an attached ``.nrrd`` / ``.mha`` (detached headers cannot come from memory).
        kind: ``"intensity"`` (default) or ``"label"``; labels get an unsigned integer dtype.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``; its suffix is not needed:
            the format is told by the ``NRRD`` magic).

    Returns:
        A 3D image ``(C, X, Y, Z)`` in RAS mm (C: pixel components, or a 4th axis), or a 2D image ``(C, rows, columns)``
        for a 2D file. ``meta["format"]`` is ``"nrrd"`` or ``"metaimage"``.

    Raises:
        InputError: Missing, empty, not NRRD/MetaImage, truncated, forged sizes, missing or multi-file data, complex
            pixels, more than 4 dimensions, non-integer values when ``kind="label"``.
        GeometryError: Sheared, singular or non-finite geometry.
    """
    kind = parse_kind(kind)
    if isinstance(path, (bytes, bytearray, memoryview)):
        blob = bytes(path)
        label = Path(name or "<bytes>")
        if not blob:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", label)
        suffix = ".nrrd" if blob.startswith(b"NRRD000") else ".mha"
        with tempfile.TemporaryDirectory(prefix="medannot-itk-") as tmp:
            p = Path(tmp) / f"image{suffix}"
            p.write_bytes(blob)
            return _read_path(p, kind, blob[:512], True, label)
    p, head = check_readable_file(path)
    return _read_path(p, kind, head, False, p)


def write_itk(image: Image, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write an image as ``.nrrd`` or ``.mha`` (header and gzip-compressed data in one file), atomically.

    The geometry is written as SimpleITK reads it back with :func:`read_itk`: 3D RAS mm -> LPS, 2D ``(row, column)``
    -> ITK ``(y, x)``. Labels are stored as uint8 (uint16 past 255 labels), floats as float32; several channels
    become multi-component pixels.

    Args:
        image: The image (intensity or label).
        path: Output file ending in ``.nrrd`` or ``.mha``.
        metadata: Extra ``key: value`` text fields (NRRD writes them as ``key:=value`` lines); keys must be plain
            text without ``:=`` or newlines.

    Returns:
        The written path.

    Raises:
        OutputError: Wrong suffix, unsupported dtype, bad metadata, or the file cannot be written.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.name.lower().endswith(ITK_WRITE_SUFFIXES):
        raise OutputError(f"expected a {' or '.join(ITK_WRITE_SUFFIXES)} file name (header and data in one file)", p)
    arr = storable_array(image.array, image.is_label, p.suffix, p)
    g = image.geometry
    if image.ndim == 3:
        spatial = np.transpose(arr, (0, 3, 2, 1))  # (C, z, y, x)
        flip = np.diag([-1.0, -1.0, 1.0])
        direction = flip @ np.asarray(g.direction)
        origin = flip @ np.asarray(g.origin)
        spacing = np.asarray(g.spacing)
    else:
        spatial = arr  # (C, row, column) = (C, y, x)
        swap = np.array([[0.0, 1.0], [1.0, 0.0]])
        direction = swap @ np.asarray(g.direction) @ swap
        origin = swap @ np.asarray(g.origin)
        spacing = np.asarray(g.spacing)[::-1]
    if image.channels == 1:
        itk_image = sitk.GetImageFromArray(np.ascontiguousarray(spatial[0]))
    else:
        itk_image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(spatial, 0, -1)), isVector=True)
    itk_image.SetSpacing([float(s) for s in spacing])
    itk_image.SetOrigin([float(o) for o in origin])
    itk_image.SetDirection([float(v) for v in direction.ravel()])
    for key, value in (metadata or {}).items():
        if not key or ":=" in key or any(c in key + value for c in "\r\n"):
            raise OutputError(f"metadata key {key[:60]!r} or its value holds ':=' or a line break; NRRD cannot store it", p)
        itk_image.SetMetaData(key, value)
    try:
        with atomic_path(p) as tmp:
            writer = sitk.ImageFileWriter()
            writer.SetFileName(str(tmp))
            writer.SetUseCompression(True)
            writer.Execute(itk_image)
    except RuntimeError as exc:
        raise OutputError(f"cannot write {p.suffix} ({_one_line(exc)}); check the folder is writable and has space", p) from None
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write {p.suffix} ({exc.strerror or exc}); check the folder is writable and has space", p) from exc
    return p
