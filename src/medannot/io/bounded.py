"""Bounded decompression: gzip streams and zip archives that cannot inflate past a limit.

The size of a compressed file says little about what reading it costs: 1 MiB of gzip inflates to
1 GiB of zeros, a NIfTI header may declare 512^3 voxels in a 127 KiB file, and a zip member's header
may lie about its size, be encrypted or use a method nobody can read. Everything here checks the
*declared* size against a limit before anything is allocated, then counts the *actual* inflated bytes
while streaming, so a bomb is refused after at most ``limit`` bytes and never inflated whole.

Typical uses (every error is an :class:`~medannot.errors.InputError` with a one-line message that
names ``what`` and says what to do)::

    limits = InflateLimits(max_bytes=256 << 20, max_ratio=200)
    data = gunzip_bytes(blob, limits, what="mask")                      # whole stream, capped
    with BoundedGzipReader(fh, limits, compressed_size=size, what=name) as stream:
        header = read_exactly(stream, 348, what=name)                   # only the bytes asked for
    check_declared(declared_nbytes(shape, itemsize, what=name), limit, what=name,
                   compressed_size=size, max_ratio=200)                  # before allocating
    members = check_zip(zf, ZipLimits(max_members=5000, max_total_bytes=4 << 30), what="upload.zip")
    extract_member(zf, members[0], target_path, what="upload.zip", budget=InflateBudget(4 << 30))

Only the standard library is used (``zlib``, ``zipfile``), so any reader may build on it.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from medannot.errors import InputError

__all__ = [
    "GZIP_MAGIC",
    "ZIP_MAGIC",
    "BoundedGzipReader",
    "InflateBudget",
    "InflateLimits",
    "ZipLimits",
    "check_declared",
    "check_zip",
    "declared_nbytes",
    "extract_member",
    "format_bytes",
    "gunzip_bytes",
    "gunzip_to_file",
    "is_gzip",
    "open_zip",
    "read_exactly",
    "read_member_bytes",
]

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
CHUNK = 1 << 16
"""Compressed bytes read per step (64 KiB)."""
DEFAULT_GRACE = 1 << 20
"""Inflated bytes always allowed whatever the ratio (1 MiB), so tiny files are never refused for their ratio."""
METHOD_NAMES = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


def format_bytes(n: int | float) -> str:
    """``n`` bytes as a short human size (``'1.5 GiB'``, ``'300 B'``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class InflateLimits:
    """How far a compressed stream may inflate.

    Attributes:
        max_bytes: Most inflated bytes (bytes); more is refused.
        max_ratio: Most inflated bytes per compressed byte (None: no ratio check). Deflate itself cannot
            exceed about 1032:1, so e.g. 200 refuses obvious bombs and keeps every real image.
        grace: Inflated bytes always allowed whatever the ratio (bytes), so small inputs are never refused
            for compressing well.
    """

    max_bytes: int
    max_ratio: float | None = None
    grace: int = DEFAULT_GRACE

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise InputError(f"max_bytes must be positive, got {self.max_bytes}")
        if self.max_ratio is not None and not self.max_ratio > 0:
            raise InputError(f"max_ratio must be positive or None, got {self.max_ratio}")

    def cap(self, compressed_size: int | None) -> int:
        """The most inflated bytes allowed for a stream of ``compressed_size`` bytes (None: unknown)."""
        if self.max_ratio is None or compressed_size is None:
            return self.max_bytes
        return int(min(self.max_bytes, max(self.grace, self.max_ratio * compressed_size)))


@dataclass
class InflateBudget:
    """A running total of inflated bytes shared by several streams (e.g. all members of one archive).

    Attributes:
        limit: Most bytes in all (bytes).
        used: Bytes taken so far.
    """

    limit: int
    used: int = field(default=0)

    def take(self, n: int, what: str) -> None:
        """Count ``n`` more bytes.

        Raises:
            InputError: When the total passes ``limit``.
        """
        self.used += n
        if self.used > self.limit:
            raise InputError(f"{what}: inflates to more than {format_bytes(self.limit)} in all (a decompression bomb?); "
                             "split it into smaller parts")


def is_gzip(head: bytes) -> bool:
    """True when ``head`` starts with the gzip magic bytes."""
    return head[:2] == GZIP_MAGIC


def declared_nbytes(shape: Sequence[int], itemsize: int, what: str = "file") -> int:
    """Bytes that an array of ``shape`` and ``itemsize`` needs, computed without overflow.

    Args:
        shape: Dimensions as declared by a header (any ints; an empty shape is one element).
        itemsize: Bytes per element.
        what: Name of the input in messages.

    Raises:
        InputError: For a negative dimension or item size.
    """
    total = int(itemsize)
    if total < 0:
        raise InputError(f"{what}: declares a negative element size ({itemsize}); the header is damaged")
    for dim in shape:
        d = int(dim)
        if d < 0:
            raise InputError(f"{what}: declares a negative dimension ({d}) in shape {tuple(int(x) for x in shape)}; "
                             "the header is damaged")
        total *= d
    return total


def check_declared(nbytes: int, limit: int, what: str = "file", compressed_size: int | None = None,
                   max_ratio: float | None = None, grace: int = DEFAULT_GRACE) -> None:
    """Refuse a declared size before allocating it: above ``limit``, or too large for its compressed size.

    Args:
        nbytes: Bytes the header declares (see :func:`declared_nbytes`).
        limit: Most bytes allowed.
        what: Name of the input in messages.
        compressed_size: Size of the compressed input (bytes), when the data are compressed.
        max_ratio: Most declared bytes per compressed byte (None: no ratio check).
        grace: Declared bytes always allowed whatever the ratio.

    Raises:
        InputError: One line with the declared size and the limit.
    """
    if nbytes > limit:
        raise InputError(f"{what}: declares {format_bytes(nbytes)} of data, more than the {format_bytes(limit)} allowed; "
                         "send a smaller image or raise the server's limit")
    if compressed_size is not None and max_ratio is not None and nbytes > max(grace, max_ratio * compressed_size):
        ratio = nbytes / max(compressed_size, 1)
        raise InputError(f"{what}: declares {format_bytes(nbytes)} of data in {format_bytes(compressed_size)} "
                         f"(ratio {ratio:.0f}:1, more than {max_ratio:.0f}:1; a decompression bomb?)")


class BoundedGzipReader(io.RawIOBase):
    """A readable stream of the inflated bytes of a gzip stream that refuses to inflate past a cap.

    Concatenated gzip members are read as one stream (as :mod:`gzip` does); zero padding after the last
    member is ignored; the CRC and length of each member are checked by zlib. Reading stops with an
    :class:`InputError` as soon as the inflated total would pass ``limits.cap(compressed_size)`` (or,
    when the compressed size is unknown, the ratio of inflated to compressed bytes read so far).

    Args:
        src: The compressed bytes (a binary file object, read forward only).
        limits: Caps on inflated bytes and ratio.
        compressed_size: Total compressed size if known (bytes), for the ratio cap.
        what: Name of the input in messages.
    """

    def __init__(self, src: IO[bytes], limits: InflateLimits, compressed_size: int | None = None, what: str = "file") -> None:
        super().__init__()
        self._src, self._limits, self._what = src, limits, what
        self._cap = limits.cap(compressed_size)
        self._known_size = compressed_size is not None
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._consumed = 0
        self._produced = 0
        self._members = 0
        self._eof = False

    @property
    def inflated(self) -> int:
        """Inflated bytes handed out so far."""
        return self._produced

    def readable(self) -> bool:
        return True

    def _feed(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        data = self._src.read(CHUNK)
        self._consumed += len(data)
        return data

    def _check_cap(self, extra: int) -> None:
        total = self._produced + extra
        if total > self._cap:
            raise InputError(f"{self._what}: inflates to more than {format_bytes(self._cap)} (a decompression bomb?); "
                             "send a smaller file or raise the limit")
        ratio = self._limits.max_ratio
        if not self._known_size and ratio is not None and total > max(self._limits.grace, ratio * max(self._consumed, 1)):
            raise InputError(f"{self._what}: inflates more than {ratio:.0f}:1 (a decompression bomb?); send a smaller file")

    def _next_member(self) -> bool:
        """After a member ended: start the next one; False at the real end of the stream."""
        rest = self._inflater.unused_data
        while len(rest) < 2:
            more = self._src.read(CHUNK)
            self._consumed += len(more)
            if not more:
                break
            rest += more
        if not rest.strip(b"\0"):
            while more := self._src.read(CHUNK):  # zero padding (tape blocks): fine; anything else is not
                self._consumed += len(more)
                if more.strip(b"\0"):
                    raise InputError(f"{self._what}: data after the end of the gzip stream; the file is damaged")
            return False
        if rest[:2] != GZIP_MAGIC:
            raise InputError(f"{self._what}: data after the end of the gzip stream; the file is damaged")
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = rest
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` with inflated bytes; 0 at the end of the stream."""
        want = len(buffer)
        if want == 0 or self._eof:
            return 0
        while True:
            if self._inflater.unconsumed_tail:
                data = self._inflater.unconsumed_tail
            else:
                data = self._feed()
                if not data and not self._inflater.eof:
                    if self._members == 0 and self._consumed == 0:
                        raise InputError(f"{self._what}: empty; expected gzip data")
                    raise InputError(f"{self._what}: the gzip stream ends early (truncated file); send the whole file")
            try:
                out = self._inflater.decompress(data, want)
            except zlib.error as exc:
                raise InputError(f"{self._what}: damaged gzip stream ({exc}); send an intact file") from None
            if out:
                self._check_cap(len(out))
                self._produced += len(out)
                buffer[: len(out)] = out
                return len(out)
            if self._inflater.eof:
                self._members += 1
                if not self._next_member():
                    self._eof = True
                    return 0

    def read_all(self) -> bytes:
        """Every remaining inflated byte (at most the cap)."""
        chunks = []
        while chunk := self.read(CHUNK * 16):
            chunks.append(chunk)
        return b"".join(chunks)


def read_exactly(stream: IO[bytes] | io.RawIOBase, n: int, what: str = "file") -> bytes:
    """Exactly ``n`` bytes from ``stream``.

    Raises:
        InputError: When the stream ends first (truncated input).
    """
    parts, got = [], 0
    while got < n:
        chunk = stream.read(min(n - got, CHUNK * 16))
        if not chunk:
            raise InputError(f"{what}: ends after {got} bytes but {n} are needed (truncated file); send the whole file")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def gunzip_bytes(data: bytes, limits: InflateLimits, what: str = "file") -> bytes:
    """Inflate gzip ``data`` whole, refusing more than ``limits`` allow.

    Raises:
        InputError: Not gzip, damaged, truncated, or inflating past the cap.
    """
    if not is_gzip(data):
        raise InputError(f"{what}: not gzip data (no gzip magic bytes)")
    return BoundedGzipReader(io.BytesIO(data), limits, len(data), what).read_all()


def gunzip_to_file(src: IO[bytes], target: str | Path, limits: InflateLimits, compressed_size: int | None = None,
                   what: str = "file") -> int:
    """Inflate the gzip stream ``src`` into the file ``target`` (streamed, capped); returns the bytes written.

    Raises:
        InputError: Damaged, truncated, or inflating past the cap (``target`` may then hold a partial file).
    """
    reader = BoundedGzipReader(src, limits, compressed_size, what)
    written = 0
    with open(target, "wb") as out:
        while chunk := reader.read(CHUNK * 16):
            out.write(chunk)
            written += len(chunk)
    return written


# --------------------------------------------------------------------------- zip archives


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on a zip archive, checked from its directory before anything is inflated.

    Attributes:
        max_members: Most members (files; folders are not counted).
        max_total_bytes: Most declared uncompressed bytes of all members together.
        max_member_bytes: Most declared uncompressed bytes of one member (None: ``max_total_bytes``).
        max_ratio: Most declared uncompressed bytes per compressed byte of one member (None: no check).
        max_depth: How many archives deep members may themselves be zip archives (0: none).
        methods: Compression methods accepted (zipfile constants; default stored and deflated).
    """

    max_members: int = 10_000
    max_total_bytes: int = 4 << 30
    max_member_bytes: int | None = None
    max_ratio: float | None = None
    max_depth: int = 0
    methods: frozenset[int] = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})


def open_zip(src: str | Path | IO[bytes], what: str = "archive") -> zipfile.ZipFile:
    """Open a zip archive for reading, with a one-line error for anything that is not one.

    Raises:
        InputError: Not a zip archive, or its directory is damaged.
    """
    try:
        return zipfile.ZipFile(src)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise InputError(f"{what}: not a readable zip archive ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except OSError as exc:
        raise InputError(f"{what}: cannot be read as a zip archive ({exc.strerror or type(exc).__name__})") from None


def _method_name(method: int) -> str:
    return METHOD_NAMES.get(method, f"method {method}")


def check_zip(zf: zipfile.ZipFile, limits: ZipLimits, what: str = "archive", depth: int = 0,
              skip: object = None) -> list[zipfile.ZipInfo]:
    """The archive's file members after checking its directory against ``limits`` (nothing is inflated).

    Refused, each with one line naming the member: more members than allowed; more declared bytes in all
    or in one member; a declared ratio above ``max_ratio``; the encrypted flag; a compression method
    outside ``methods`` (e.g. 99, AES); a zip member deeper than ``max_depth``; a stored member whose
    declared and compressed sizes differ.

    Args:
        zf: An open archive (:func:`open_zip`).
        limits: The bounds.
        what: Name of the archive in messages.
        depth: How deep this archive is itself nested (0 for an uploaded archive).
        skip: Optional ``callable(ZipInfo) -> bool``: members to leave out (e.g. ``__MACOSX/``), not counted.

    Raises:
        InputError: The first violation found.
    """
    members = [i for i in zf.infolist() if not i.is_dir() and not (callable(skip) and skip(i))]
    if len(members) > limits.max_members:
        raise InputError(f"{what}: {len(members)} files, more than the {limits.max_members} allowed; split the archive")
    total = sum(i.file_size for i in members)
    if total > limits.max_total_bytes:
        raise InputError(f"{what}: declares {format_bytes(total)} uncompressed, more than the "
                         f"{format_bytes(limits.max_total_bytes)} allowed; split the archive")
    per_member = limits.max_member_bytes if limits.max_member_bytes is not None else limits.max_total_bytes
    for info in members:
        name = info.filename[:200]
        if info.flag_bits & 0x1:
            raise InputError(f"{what}: member {name!r} is encrypted; upload an archive without a password")
        if info.compress_type not in limits.methods:
            allowed = ", ".join(sorted(_method_name(m) for m in limits.methods))
            raise InputError(f"{what}: member {name!r} uses compression {_method_name(info.compress_type)}, not one of "
                             f"{allowed}; re-create the archive with a standard zip tool")
        if info.file_size > per_member:
            raise InputError(f"{what}: member {name!r} declares {format_bytes(info.file_size)}, more than the "
                             f"{format_bytes(per_member)} allowed")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise InputError(f"{what}: member {name!r} is stored uncompressed but declares {info.file_size} bytes in "
                             f"{info.compress_size}; the archive is damaged")
        if limits.max_ratio is not None and info.file_size > max(DEFAULT_GRACE, limits.max_ratio * info.compress_size):
            raise InputError(f"{what}: member {name!r} declares {format_bytes(info.file_size)} in "
                             f"{format_bytes(info.compress_size)} (more than {limits.max_ratio:.0f}:1; a decompression bomb?)")
        if depth >= limits.max_depth and info.filename.lower().endswith(".zip"):
            raise InputError(f"{what}: member {name!r} is an archive inside the archive; unpack it and upload its files")
    return members


def extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: str | Path | IO[bytes], what: str = "archive",
                   budget: InflateBudget | None = None, limits: ZipLimits | None = None, depth: int = 0) -> int:
    """Inflate one member into ``target`` (a path or a writable file object), counting every byte.

    The member must inflate to exactly its declared size (more is stopped at once, fewer is refused),
    pass its CRC, and fit ``budget``. With ``limits``, a member that is itself a zip archive (by its
    magic bytes) deeper than ``limits.max_depth`` is refused.

    Returns:
        The bytes written (= ``info.file_size``).

    Raises:
        InputError: One line naming the member: damaged, encrypted, unsupported method, size mismatch,
            nested archive, or over the budget.
    """
    name = info.filename[:200]
    written = 0
    out: IO[bytes] = open(target, "wb") if isinstance(target, (str, Path)) else target  # noqa: SIM115
    try:
        with zf.open(info) as fh:
            first = True
            while True:
                chunk = fh.read(CHUNK * 16)
                if not chunk:
                    break
                if first and limits is not None and depth >= limits.max_depth and chunk[:4] == ZIP_MAGIC:
                    raise InputError(f"{what}: member {name!r} is an archive inside the archive; unpack it and upload its files")
                first = False
                written += len(chunk)
                if written > info.file_size:
                    raise InputError(f"{what}: member {name!r} inflates past its declared {info.file_size} bytes; "
                                     "the archive is damaged or forged")
                if budget is not None:
                    budget.take(len(chunk), what)
                out.write(chunk)
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise InputError(f"{what}: member {name!r} is damaged ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         "re-create the archive") from None
    except NotImplementedError:
        raise InputError(f"{what}: member {name!r} uses compression {_method_name(info.compress_type)}, which cannot be read; "
                         "re-create the archive with a standard zip tool") from None
    except OSError:  # a local header offset outside the archive: zipfile seeks before its start (EINVAL)
        raise InputError(f"{what}: member {name!r} cannot be found where the archive's directory says it is; the archive is "
                         "damaged: re-create it") from None
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
        raise InputError(f"{what}: member {name!r} cannot be read ({str(exc).splitlines()[0][:100]}); "
                         "upload an archive without a password") from None
    finally:
        if out is not target:
            out.close()
    if written != info.file_size:
        raise InputError(f"{what}: member {name!r} holds {written} bytes but declares {info.file_size}; the archive is damaged")
    return written


def read_member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str = "archive", budget: InflateBudget | None = None,
                      limits: ZipLimits | None = None, depth: int = 0) -> bytes:
    """A member's bytes in memory, with the checks of :func:`extract_member` (for small members only)."""
    buffer = io.BytesIO()
    extract_member(zf, info, buffer, what, budget, limits, depth)
    return buffer.getvalue()
