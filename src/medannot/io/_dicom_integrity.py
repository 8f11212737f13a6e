"""Is a parsed DICOM file whole? Checks for files cut short that pydicom reads without complaint.

pydicom reads what a truncated file holds: a file cut before its Pixel Data becomes a dataset without pixels, an
encapsulated (compressed) Pixel Data cut inside its last fragment becomes a shorter value, a deflated file cut
short inflates to fewer elements. Copying such a file (``medannot deid``) or decoding it would hand on a damaged
image without a word. :func:`check_complete` refuses them, from the parsed dataset and, for deflated files, the
file's bytes; nothing is decoded.

* an image (Rows and Columns declared) without Pixel Data: truncated before its pixels;
* native Pixel Data shorter than its declared length (the file ends inside it);
* encapsulated Pixel Data whose items do not parse to the end, or whose last fragment of a JPEG-family transfer
  syntax (JPEG, JPEG-LS, JPEG 2000) lacks the end-of-image marker ``FFD9``;
* a deflated dataset whose deflate stream does not end.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

from medannot.errors import InputError

__all__ = ["check_complete"]

_ITEM = (0xFFFE, 0xE000)
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV")
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_JPEG_FAMILY = "1.2.840.10008.1.2.4."
_HTJ2K_OR_JPEGXL = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
                    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112")  # fmt: skip
_MPEG = ("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103",
         "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107",
         "1.2.840.10008.1.2.4.108")  # fmt: skip


def _fragments(value: bytes, path: Path) -> list[bytes]:
    """The items of an encapsulated Pixel Data value (basic offset table first); refused when they do not parse."""
    items: list[bytes] = []
    pos = 0
    while pos < len(value):
        if len(value) - pos < 8:
            raise InputError(f"truncated: the compressed pixel data end inside an item header ({len(value) - pos} bytes left)",
                             path)
        group, elem, length = struct.unpack("<HHI", value[pos : pos + 8])
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != _ITEM:
            raise InputError(f"compressed pixel data hold ({group:04X},{elem:04X}) where an item was expected; the file is damaged", path)
        if length > len(value) - pos - 8:
            raise InputError(f"truncated: a compressed pixel data fragment declares {length} bytes, {len(value) - pos - 8} are left", path)
        items.append(value[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return items


def _meta_end(data: bytes) -> int:
    """Byte offset where the data set starts: after the preamble and the file meta information (group 0002)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    while pos + 8 <= len(data):
        group, _, vr = struct.unpack("<HH2s", data[pos : pos + 6])
        if group != 0x0002:
            break
        if vr in _LONG_VRS:
            (length,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            pos += 12 + length
        else:
            (length,) = struct.unpack("<H", data[pos + 6 : pos + 8])
            pos += 8 + length
    return pos


def _walk(data: bytes, pos: int, explicit: bool, order: str, path: Path) -> None:
    """Follow every element, item and delimiter of a data set to the end of ``data``, without recursion: each
    declared length must fit in the file and every undefined-length sequence or item must be closed."""
    stack: list[tuple[str, bool]] = []  # ("seq" | "item", explicit VR inside)
    n = len(data)
    while pos < n:
        if n - pos < 8:
            if data[pos:].strip(b"\x00"):
                raise InputError("truncated: the file ends inside an element header", path)
            break
        group, elem = struct.unpack(order + "HH", data[pos : pos + 4])
        in_seq = bool(stack) and stack[-1][0] == "seq"
        if in_seq:
            (length,) = struct.unpack(order + "I", data[pos + 4 : pos + 8])
            if (group, elem) == (0xFFFE, 0xE0DD):
                stack.pop()
                pos += 8
                continue
            if (group, elem) != _ITEM:
                raise InputError(f"({group:04X},{elem:04X}) found where a sequence item was expected; the file is damaged", path)
            if length == _UNDEFINED:
                stack.append(("item", stack[-1][1]))
                pos += 8
                continue
            if pos + 8 + length > n:
                raise InputError(f"truncated: an item declares {length} bytes, {n - pos - 8} are left", path)
            pos += 8 + length
            continue
        if group == 0xFFFE:
            if elem == 0xE00D and stack and stack[-1][0] == "item":
                stack.pop()
                pos += 8
                continue
            raise InputError(f"a delimiter ({group:04X},{elem:04X}) where an element was expected; the file is damaged", path)
        inner = stack[-1][1] if stack else explicit
        vr = data[pos + 4 : pos + 6]
        if inner and vr in _LONG_VRS:
            if n - pos < 12:
                raise InputError("truncated: the file ends inside an element header", path)
            (length,) = struct.unpack(order + "I", data[pos + 8 : pos + 12])
            head = 12
        elif inner:
            (length,) = struct.unpack(order + "H", data[pos + 6 : pos + 8])
            head = 8
        else:
            (length,) = struct.unpack(order + "I", data[pos + 4 : pos + 8])
            head = 8
        if length == _UNDEFINED:
            stack.append(("seq", inner and vr != b"UN"))  # UN of undefined length holds implicit VR items
            pos += head
            continue
        if pos + head + length > n:
            raise InputError(f"truncated: element ({group:04X},{elem:04X}) declares {length} bytes, {n - pos - head} are left", path)
        pos += head + length
    if stack:
        raise InputError("truncated: the file ends inside a sequence (its delimiter is missing)", path)


def _deflate_ends(data: bytes) -> bool:
    """True when the deflate stream after the file meta information of a deflated file ends (is complete)."""
    pos = _meta_end(data)
    inflater = zlib.decompressobj(-15)
    try:
        for start in range(pos, len(data), 1 << 20):
            inflater.decompress(data[start : start + (1 << 20)], 1 << 26)
            while inflater.unconsumed_tail:
                inflater.decompress(inflater.unconsumed_tail, 1 << 26)
    except zlib.error:
        return False
    return inflater.eof


def check_complete(ds: Any, path: Path, data: bytes | None = None) -> None:
    """Refuse a parsed DICOM file that was cut short (see the module docstring).

    Args:
        ds: The dataset as pydicom read it (pixels included).
        path: The file (read again only for a deflated transfer syntax, unless ``data`` holds its bytes).
        data: The file's bytes, when they are in memory: then every element, item and delimiter is followed to
            the end of the file too (pydicom stops quietly where a file ends inside an element).

    Raises:
        InputError: One line naming what is missing.
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
    if ts == _DEFLATED:
        raw = data if data is not None else Path(path).read_bytes()
        if not _deflate_ends(raw):
            raise InputError("truncated: the deflated data set ends before its deflate stream does", path)
    elif data is not None:
        start = _meta_end(data)
        vr = data[start + 4 : start + 6]
        explicit = len(vr) == 2 and vr.isalpha() and vr.isupper()  # as pydicom: the bytes tell, whatever the meta says
        _walk(data, start, explicit, ">" if ts == _BIG_ENDIAN else "<", path)
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels:
        if ds.get("Rows") and ds.get("Columns"):  # an image header without its pixels
            raise InputError("truncated before its pixels: it declares an image (Rows, Columns) but holds no pixel data", path)
        return  # (an image object cut exactly between two elements before Rows cannot be told from a header-only one)
    if "PixelData" not in ds:
        return
    raw = ds.get_item(0x7FE00010)  # the element as read (its declared length) when not converted yet
    value = raw.value
    if not isinstance(value, (bytes, bytearray)):
        return
    declared = getattr(raw, "length", None)
    undefined = declared == 0xFFFFFFFF or bool(getattr(raw, "is_undefined_length", False))
    if ts and not undefined:
        from pydicom.uid import UID

        uid = UID(ts)
        if uid.is_compressed and uid != _DEFLATED:
            raise InputError(f"the transfer syntax says the pixels are compressed ({uid.name}) but they are stored uncompressed: "
                             "the file is damaged", path)
    if not undefined:
        if declared is not None and len(value) < declared:
            raise InputError(f"truncated: the pixel data declare {declared} bytes, the file holds {len(value)}", path)
        return
    fragments = _fragments(bytes(value), path)
    frames = fragments[1:]
    if not frames:
        raise InputError("truncated: the compressed pixel data hold no fragment", path)
    if ts.startswith(_JPEG_FAMILY) and ts not in _HTJ2K_OR_JPEGXL + _MPEG:
        last = frames[-1].rstrip(b"\x00\xff")  # even-length padding and JPEG fill bytes after the marker
        if not last.endswith(b"\xff\xd9") and not frames[-1].rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise InputError("truncated: the last compressed frame lacks its end-of-image marker (FFD9)", path)
