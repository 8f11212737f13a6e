"""Checks of a PNG file's chunks before Pillow decodes it.

Pillow reads some damaged PNG files without a word: a file cut inside its last image-data chunk (the pixels
that are there, the rest left as they were) and image data that inflate to fewer rows than the header declares
(the missing rows left black). :func:`check_png` walks the chunks: every chunk that starts must be complete
(length, type, data and CRC inside the file), and the image data must inflate to at least the bytes the header
declares (rows x (1 filter byte + the row's bytes) for a non-interlaced picture, the seven passes of an interlaced
one). It inflates in bounded steps: nothing the size of the picture is allocated.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import IO

from medannot.errors import InputError

__all__ = ["check_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (first row, first column, row step, column step).
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))
_STEP = 1 << 20


def _row_bytes(width: int, bits_per_pixel: int) -> int:
    return (width * bits_per_pixel + 7) // 8


def declared_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes the image data of a PNG must inflate to (filter bytes included)."""
    bpp = _CHANNELS.get(colour, 1) * depth
    if interlace != 1:
        return height * (1 + _row_bytes(width, bpp))
    total = 0
    for row0, col0, rstep, cstep in _ADAM7:
        rows = max(0, (height - row0 + rstep - 1) // rstep)
        cols = max(0, (width - col0 + cstep - 1) // cstep)
        if rows and cols:
            total += rows * (1 + _row_bytes(cols, bpp))
    return total


def check_png(fh: IO[bytes], size: int, path: Path) -> None:
    """Refuse a PNG whose chunks are cut short or whose image data hold fewer rows than declared.

    Args:
        fh: The file (read from its start; left at an unspecified position).
        size: The file's size in bytes.
        path: Named in messages.

    Raises:
        InputError: One line saying what is missing.
    """
    fh.seek(0)
    if fh.read(8) != _SIGNATURE:
        return  # not a PNG: Pillow decides
    pos, expected, inflated = 8, None, 0
    inflater = zlib.decompressobj()
    while pos + 8 <= size:
        head = fh.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        name = kind.decode("latin-1")
        if pos + 12 + length > size:
            raise InputError(f"the PNG chunk {name!r} at byte {pos} needs {length + 12} bytes, the file ends {size - pos} bytes "
                             "after its start; the file is truncated or corrupt", path)
        if kind == b"IHDR" and length >= 13:
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", fh.read(13))
            expected = declared_bytes(width, height, depth, colour, interlace)
            fh.seek(length - 13 + 4, 1)
        elif kind == b"IDAT":
            left = length
            while left and not inflater.eof and (expected is None or inflated < expected):
                chunk = fh.read(min(left, _STEP))
                left -= len(chunk)
                try:
                    while chunk and not inflater.eof and (expected is None or inflated < expected):
                        inflated += len(inflater.decompress(chunk, _STEP))
                        chunk = inflater.unconsumed_tail
                except zlib.error:
                    raise InputError("the PNG image data cannot be inflated; the file is truncated or corrupt", path) from None
            fh.seek(left + 4, 1)
        elif kind == b"IEND":
            break
        else:
            fh.seek(length + 4, 1)
        pos += 12 + length
    if expected is not None and inflated < expected:
        raise InputError(f"the PNG image data inflate to {inflated} bytes, the header declares {expected} (rows are missing); "
                         "the file is truncated or corrupt", path)
