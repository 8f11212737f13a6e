"""How much memory one image may ask for, and how far a compressed file may inflate, before a reader refuses it.

Every reader checks the size a header *declares* against :func:`read_limits` before it allocates anything, and
a compressed file's declared size against its size on disk (a ratio no real image reaches is a decompression
bomb or a forged header). The limits are one process-wide setting: ``medannot --max-image-mb N ...`` on the
command line, :func:`set_read_limits` or :func:`use_read_limits` from Python. The refusal names the file, the
declared size, the limit and the option that raises it.

Standard library only, so ``medannot --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medannot.errors import ConfigError, InputError

__all__ = ["ReadLimits", "check_image_size", "check_picture_pixels", "read_limits", "set_read_limits", "use_read_limits"]

MIB = 1024**2
#: Pillow's decompression-bomb bound (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 megapixels): the most pixels one
#: plane of a picture may have by default. The 2D path holds ~15 bytes per pixel at its peak (float copies, uint32
#: instance ids, RGB overlays), so this keeps a picture's run under 2 GB; a 144-megapixel PNG took 2.6 GB.
PICTURE_PIXELS = 89_478_485
DEFAULT_IMAGE_BYTES = 2 * 1024**3


def _size(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class ReadLimits:
    """Bounds every reader checks before allocating.

    Attributes:
        max_image_bytes: Most bytes of pixel data one image may declare, as stored (bytes; default 2 GiB, about a
            1024 x 1024 x 1000 int16 volume). The methods that run on an image need a few times this.
        max_ratio: Most declared bytes per compressed byte of an intensity image (gzip, zip, PNG). Real images
            compress 2-20:1; a header declaring 200 times the file's size is a bomb or forged.
        max_label_ratio: The same for label maps, which are mostly background and compress up to deflate's
            ~1032:1 (a higher ratio is impossible, so only a forged header passes it).
        grace: Declared bytes always allowed whatever the ratio (bytes), so small files never fail the ratio.
        max_picture_pixels: Most pixels in one plane of a picture (PNG, JPEG, BMP, TIFF page); default
            :data:`PICTURE_PIXELS`, raised in proportion when ``--max-image-mb`` raises the byte limit.
    """

    max_image_bytes: int = DEFAULT_IMAGE_BYTES
    max_ratio: float = 200.0
    max_label_ratio: float = 1100.0
    grace: int = 64 * MIB
    max_picture_pixels: int = PICTURE_PIXELS

    def __post_init__(self) -> None:
        if not (isinstance(self.max_image_bytes, int) and self.max_image_bytes > 0):
            raise ConfigError(f"max_image_bytes must be a positive number of bytes, got {self.max_image_bytes!r}")
        for name in ("max_ratio", "max_label_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")

    def ratio(self, label: bool) -> float:
        """The ratio bound for a label map (``label``) or an intensity image."""
        return self.max_label_ratio if label else self.max_ratio


_current = ReadLimits()


def read_limits() -> ReadLimits:
    """The limits in force."""
    return _current


def set_read_limits(limits: ReadLimits | None = None, *, max_image_mb: float | None = None) -> ReadLimits:
    """Replace the limits in force (``limits``, or the defaults with ``max_image_mb`` MiB per image); returns the old.

    Raises:
        ConfigError: A limit that is not a positive number.
    """
    global _current
    old = _current
    if limits is None:
        if max_image_mb is None or not (isinstance(max_image_mb, (int, float)) and math.isfinite(max_image_mb) and max_image_mb > 0):
            raise ConfigError(f"--max-image-mb must be a positive number of MiB, got {max_image_mb!r}")
        nbytes = int(max_image_mb * MIB)
        limits = ReadLimits(max_image_bytes=nbytes, max_picture_pixels=int(PICTURE_PIXELS * max(1.0, nbytes / DEFAULT_IMAGE_BYTES)))
    _current = limits
    return old


@contextlib.contextmanager
def use_read_limits(limits: ReadLimits) -> Iterator[ReadLimits]:
    """Use ``limits`` inside a ``with`` block."""
    old = set_read_limits(limits)
    try:
        yield limits
    finally:
        set_read_limits(old)


def check_image_size(path: str | Path | None, nbytes: int, what: str = "image", compressed_size: int | None = None,
                     label: bool = False) -> None:
    """Refuse an image whose header declares more pixel data than the limit, or more than its compressed size can
    hold, before anything is allocated.

    Args:
        path: The file (named in the message).
        nbytes: Bytes of pixel data the header declares (as stored).
        what: What the header belongs to (``"NIfTI image"``, ``"picture"``...).
        compressed_size: Bytes the pixel data are compressed into, when they are (gzip, zip member, PNG).
        label: A label map (a looser ratio bound).

    Raises:
        InputError: One line with the declared size, the limit and how to raise it.
    """
    limits = _current
    where = None if path is None else Path(path)
    ratio = limits.ratio(label)
    if compressed_size is not None and nbytes > max(limits.grace, ratio * max(compressed_size, 1)):
        raise InputError(
            f"{what} declares {_size(nbytes)} of pixel data in {_size(compressed_size)} of compressed data (ratio "
            f"{nbytes / max(compressed_size, 1):.0f}:1, more than {ratio:.0f}:1): a decompression bomb or a damaged header; "
            "if it is a real image, pass it uncompressed",
            where,
        )
    if nbytes > limits.max_image_bytes:
        want = max(1, math.ceil(nbytes / MIB * 1.1))
        raise InputError(
            f"{what} declares {_size(nbytes)} of pixel data, more than the {_size(limits.max_image_bytes)} allowed for one image; "
            f"if the file is right, raise the limit (medannot --max-image-mb {want} ...) on a machine with the memory",
            where,
        )


def check_picture_pixels(path: str | Path | None, rows: int, cols: int, what: str = "picture") -> None:
    """Refuse a picture plane of more than ``max_picture_pixels`` pixels before it is decoded.

    Raises:
        InputError: One line with the size, the limit and the option that raises it.
    """
    limits = _current
    n = int(rows) * int(cols)
    if n > limits.max_picture_pixels:
        factor = n / limits.max_picture_pixels
        want = max(1, math.ceil(limits.max_image_bytes / MIB * factor * 1.1))
        raise InputError(
            f"{what} of {cols} x {rows} = {n / 1e6:.1f} megapixels, more than the {limits.max_picture_pixels / 1e6:.1f} allowed "
            f"for one picture (a decompression bomb, or a picture too large for the 2D path's memory); if the file is right, "
            f"tile it, or raise the limit (medannot --max-image-mb {want} ...) on a machine with the memory",
            None if path is None else Path(path),
        )
