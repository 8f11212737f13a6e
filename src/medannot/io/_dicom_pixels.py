"""DICOM headers and pixel bytes: one header parse per file, size checks before allocation, fast native reads.

Used by :mod:`medannot.io.dicom`. A header is parsed once with pydicom (``stop_before_pixels``); the
reader then knows where the Pixel Data element starts, so it can

* refuse a file whose declared Rows x Columns x NumberOfFrames x samples x bits needs more bytes than the
  file holds, before anything is allocated or decoded;
* copy uncompressed little-endian pixels straight from the file into a preallocated volume
  (``readinto``, no second parse, no temporary per slice); everything else (compressed, big endian,
  deflated, float pixel data) is decoded by pydicom.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from medannot.errors import InputError
from medannot.io._common import check_allocation, open_regular

#: Uncompressed little-endian transfer syntaxes whose Pixel Data can be copied as they are.
NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_IMPLICIT_VR = "1.2.840.10008.1.2"
_PIXEL_DATA_TAG = (0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF
#: Identifiers read from the first header of a series: :func:`convert_identifiers` converts them once.
IDENTIFIER_KEYWORDS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
                       "SOPClassUID")  # fmt: skip
ENCAPSULATED_MAX_RATIO = 5000  # compressed pixel data cannot expand more than this
def _pydicom_value_errors() -> tuple[type[Exception], ...]:
    try:
        from pydicom.errors import BytesLengthException
    except ImportError:  # pragma: no cover - pydicom < 2.2
        return ()
    return (BytesLengthException,)


READ_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError, OSError,
               EOFError, IndexError, OverflowError, ZeroDivisionError, struct.error, *_pydicom_value_errors())  # fmt: skip
PIXEL_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, RecursionError)
"""What decoding pixel data may raise on a damaged file (deeply nested sequences included)."""


def damaged_header(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a reader of one file or series: an error pydicom raises while converting a header value later than
    the parse (pydicom converts lazily) becomes one :class:`InputError` naming the file (``path``/``source`` argument,
    or the ``name`` keyword for bytes)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError:
            raise
        except RecursionError:
            where = _where(args, kwargs)
            raise InputError("DICOM sequences are nested too deeply to read (corrupt or malicious file)", where) from None
        except READ_ERRORS as exc:
            where = _where(args, kwargs)
            raise InputError(f"cannot read a header value ({one_line(exc)[:160]}); the file is damaged", where) from None

    return wrapper


def _where(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Path | None:
    source = args[0] if args else kwargs.get("path", kwargs.get("source"))
    if isinstance(source, (str, Path)):
        return Path(source)
    name = kwargs.get("name")
    return Path(name) if name else None


def one_line(exc: BaseException | Warning | str) -> str:
    """An exception's (or warning's) text on one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class PixelElement:
    """Where a file's Pixel Data element sits.

    Attributes:
        value_offset: Byte offset of the first pixel byte in the file.
        length: Declared value length in bytes (``None`` when undefined: encapsulated/compressed data).
        file_size: Size of the file in bytes.
    """

    value_offset: int
    length: int | None
    file_size: int

    @property
    def stored(self) -> int:
        """Bytes of pixel data actually present in the file."""
        available = max(0, self.file_size - self.value_offset)
        return available if self.length is None else min(self.length, available)


@dataclass(frozen=True)
class Header:
    """A parsed DICOM header (no pixels) and where its pixel data are.

    Attributes:
        path: The file; for a file held in memory, its name (used in messages only, never opened).
        dataset: pydicom dataset without Pixel Data.
        pixels: Where the Pixel Data element sits; None when the file holds no (7FE0,0010) element.
        data: The whole file when it is held in memory (read from ``bytes``), else None.
    """

    path: Path
    dataset: Any
    pixels: PixelElement | None
    data: bytes | None = None

    def open(self) -> BinaryIO:
        """The file's bytes as a binary file object (the file on disk, or the bytes in memory)."""
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")


def _little_endian_explicit_or_native(ts: str) -> bool:
    """Native little endian, or encapsulated (JPEG family ``...1.2.4.*``, RLE ``...1.2.5``): not deflated, not big endian."""
    return ts in NATIVE_LITTLE_ENDIAN or ts.startswith("1.2.840.10008.1.2.4.") or ts == "1.2.840.10008.1.2.5"


def _pixel_element(fh, ts: str, file_size: int) -> PixelElement | None:
    """Parse the element header at the current file position (just before Pixel Data)."""
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != _PIXEL_DATA_TAG:
        return None
    if ts == _IMPLICIT_VR:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    elif len(head) == 12 and head[4:6] in (b"OB", b"OW", b"OD", b"OF", b"OL", b"UN", b"OV"):
        (length,) = struct.unpack("<I", head[8:12])
        offset = start + 12
    else:
        return None
    return PixelElement(offset, None if length == _UNDEFINED else length, file_size)


def read_header(path: Path, notes: list[str] | None = None, data: bytes | None = None) -> Header:
    """Parse the header of one file once (pydicom, ``stop_before_pixels``) and locate its Pixel Data.

    Args:
        path: A readable file; with ``data``, the name of the file held in memory (messages only).
        notes: pydicom's warnings about the file are appended here (``"name: warning"``).
        data: The file's bytes when it is held in memory.

    Raises:
        InputError: Missing, empty or unreadable file, not DICOM, truncated or corrupt header, sequences nested
            too deeply to parse.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with (io.BytesIO(data) if data is not None else open_regular(path)) as fh, warnings.catch_warnings(record=True) as caught:
            size = len(data) if data is not None else os.fstat(fh.fileno()).st_size
            if size == 0:
                raise InputError("file is empty (0 bytes); the copy or download probably failed", path)
            warnings.simplefilter("always")
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta is not None else ""
            element = _pixel_element(fh, ts, size) if _little_endian_explicit_or_native(ts) else None
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("file not found; check the path", path) from None
    except IsADirectoryError:
        raise InputError("expected a file, received a folder", path) from None
    except PermissionError:
        raise InputError("permission denied when reading; make the file readable (chmod +r)", path) from None
    except InvalidDicomError:
        raise InputError("not a DICOM file (no 'DICM' preamble)", path) from None
    except RecursionError:
        raise InputError("DICOM sequences are nested too deeply to parse (corrupt or malicious file)", path) from None
    except READ_ERRORS as exc:
        raise InputError(f"cannot parse the DICOM file, it is probably truncated or corrupt ({one_line(exc)})", path) from None
    if notes is not None:
        notes.extend(f"{path.name}: {one_line(w.message)}" for w in caught)
    return Header(path, ds, element, data)


def convert_identifiers(header: Header, notes: list[str] | None = None) -> None:
    """Convert (and let pydicom validate) the identifiers of a header now, its warnings going to ``notes``,
    so that later reads of them (case names, ``Image.meta``) are silent. Done once per series, not per file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for keyword in IDENTIFIER_KEYWORDS:
            try:
                header.dataset.get(keyword)
            except READ_ERRORS:
                pass  # left for the caller's own checks
    if notes is not None:
        notes.extend(f"{header.path.name}: {one_line(w.message)}" for w in caught)


def read_dataset(path: Path, notes: list[str], data: bytes | None = None) -> Any:
    """Full pydicom read (pixels included) with errors as InputError and warnings collected in ``notes``.

    ``data``: the file's bytes when it is held in memory (``path`` then only names it in messages).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
    except InvalidDicomError:
        raise InputError("not a DICOM file (no 'DICM' preamble)", path) from None
    except RecursionError:
        raise InputError("DICOM sequences are nested too deeply to parse (corrupt or malicious file)", path) from None
    except READ_ERRORS as exc:
        raise InputError(f"cannot parse the DICOM file, it is probably truncated or corrupt ({one_line(exc)})", path) from None
    notes.extend(f"{path.name}: {one_line(w.message)}" for w in caught)
    return ds


def _int(ds, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    try:
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


#: Samples per pixel each PhotometricInterpretation needs (others, and an absent one, are left to the decoder).
_SAMPLES_OF = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3, "YBR_PARTIAL_422": 3,
               "YBR_PARTIAL_420": 3, "YBR_ICT": 3, "YBR_RCT": 3}


@dataclass(frozen=True)
class PixelFormat:
    """Declared pixel layout of an image (from Rows, Columns, NumberOfFrames, SamplesPerPixel, BitsAllocated...)."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool

    @classmethod
    def of(cls, ds, path: Path) -> PixelFormat:
        """Read and sanity-check the declared layout.

        Raises:
            InputError: Fewer than 1 row/column/frame, or a bit depth DICOM does not allow.
        """
        rows, cols = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
        frames, spp = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
        bits = _int(ds, "BitsAllocated", 16)
        if rows < 1 or cols < 1:
            raise InputError(f"DICOM image declares {rows} rows x {cols} columns; expected at least 1 x 1", path)
        if frames < 1 or spp not in (1, 3, 4):
            raise InputError(f"DICOM image declares {frames} frames and {spp} samples per pixel; expected >= 1 frame, 1 or 3 samples", path)
        if bits not in (1, 8, 16, 32, 64):
            raise InputError(f"DICOM image declares BitsAllocated {bits}; expected 1, 8, 16, 32 or 64", path)
        pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        needed = _SAMPLES_OF.get(pi)
        if needed is not None and spp != needed:
            raise InputError(f"PhotometricInterpretation {pi} needs {needed} sample(s) per pixel, the header declares {spp}; the "
                             "header does not describe these pixels (it is damaged)", path)
        stored = min(max(_int(ds, "BitsStored", bits), 1), bits)
        return cls(rows, cols, frames, spp, bits, stored, _int(ds, "PixelRepresentation", 0) == 1)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one uncompressed frame."""
        return (self.rows * self.columns * self.samples * self.bits_allocated + 7) // 8

    @property
    def nbytes(self) -> int:
        """Bytes of all uncompressed frames."""
        return (self.rows * self.columns * self.samples * self.frames * self.bits_allocated + 7) // 8

    def native_dtype(self) -> np.dtype | None:
        """numpy dtype of native little-endian integer pixels, ``None`` for 1-bit or 64-bit data."""
        if self.bits_allocated not in (8, 16, 32):
            return None
        return np.dtype(f"<{'i' if self.signed else 'u'}{self.bits_allocated // 8}")


def check_declared_size(header: Header, fmt: PixelFormat) -> None:
    """Refuse, before any allocation or decoding, pixel data that cannot hold the declared image.

    Uncompressed data must hold every declared byte; compressed data cannot expand more than
    :data:`ENCAPSULATED_MAX_RATIO` times; nothing may need more than the reader's memory limit.

    Raises:
        InputError: The declared size is impossible for the file (``truncated`` / ``corrupt`` in the message).
    """
    path, ds = header.path, header.dataset
    el = header.pixels
    if el is None:
        check_allocation(path, fmt.nbytes, "DICOM image")
        return  # big endian, deflated or float pixel data: pydicom reads and checks the whole file
    shape = f"{fmt.rows}x{fmt.columns}x{fmt.frames} frames x {fmt.samples} samples at {fmt.bits_allocated} bits"
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    compressed = el.length is None or (ts is not None and str(ts) not in NATIVE_LITTLE_ENDIAN)
    if compressed:
        if fmt.nbytes > max(el.stored, 1) * ENCAPSULATED_MAX_RATIO:
            raise InputError(
                f"declared size {shape} ({fmt.nbytes} bytes) is impossible for {el.stored} bytes of compressed pixel data; "
                "the header is corrupt",
                path,
            )
    else:
        check_native_length(el.stored, el.length, fmt, path)
    check_allocation(path, fmt.nbytes, "DICOM image")


def check_native_length(stored: int, declared: int | None, fmt: PixelFormat, path: Path) -> None:
    """Uncompressed pixel data must be exactly what Rows x Columns x frames x samples x BitsAllocated need (plus one
    byte of padding to an even length): fewer is a truncated file, more means the header does not describe them.

    Raises:
        InputError: One line with both sizes and which it is.
    """
    shape = f"{fmt.rows}x{fmt.columns}x{fmt.frames} frames x {fmt.samples} samples at {fmt.bits_allocated} bits"
    if stored < fmt.nbytes:
        what = "the file is truncated" if declared is not None and declared >= fmt.nbytes else "the header or the file is corrupt"
        raise InputError(f"pixel data shorter than declared: {stored} bytes stored, {fmt.nbytes} needed for {shape}; {what}", path)
    if stored > fmt.nbytes + (fmt.nbytes % 2) and (declared is None or declared <= stored):  # (a length past the end of the
        # file says nothing about where the pixels end: then only their count matters)
        raise InputError(f"pixel data longer than declared: {stored} bytes stored, {fmt.nbytes} needed for {shape}; the header "
                         "(Rows, Columns, BitsAllocated, SamplesPerPixel or NumberOfFrames) does not describe these pixels", path)


def correct_unused_bits(raw: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """Clear (unsigned) or sign-extend (signed) the bits above BitsStored, in place, as pydicom does."""
    shift = fmt.bits_allocated - fmt.bits_stored
    if shift > 0 and raw.dtype.kind in "iu" and raw.dtype.itemsize * 8 == fmt.bits_allocated:
        np.left_shift(raw, shift, out=raw)
        np.right_shift(raw, shift, out=raw)
    return raw


def read_native_pixels(header: Header, out: np.ndarray) -> None:
    """Copy native little-endian pixels from the file straight into ``out`` (C-contiguous, ``out.nbytes`` bytes:
    one frame, or all frames of a multi-frame file).

    Raises:
        InputError: The file changed or ends before the pixels do.
    """
    el = header.pixels
    if el is None or not out.flags.c_contiguous:
        raise ValueError("read_native_pixels needs a native Pixel Data element and a C-contiguous array")
    try:
        with (io.BytesIO(header.data) if header.data is not None else open(header.path, "rb", buffering=0)) as fh:
            fh.seek(el.value_offset)
            view = memoryview(out.reshape(-1)).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
            got = 0
            while got < len(view):
                n = fh.readinto(view[got:])
                if not n:
                    break
                got += n
    except OSError as exc:
        raise InputError(f"cannot read the pixel data ({exc.strerror or exc})", header.path) from None
    if got < out.nbytes:
        raise InputError(f"pixel data shorter than declared: {got} bytes read, {out.nbytes} needed; the file is truncated", header.path)


def is_native(header: Header, fmt: PixelFormat) -> bool:
    """True when ``read_native_pixels`` can read the file: uncompressed little endian, defined length, grey,
    8/16/32 bits allocated."""
    meta = header.dataset.file_meta
    return (
        header.pixels is not None
        and header.pixels.length is not None
        and fmt.samples == 1
        and fmt.native_dtype() is not None
        and meta is not None
        and str(meta.get("TransferSyntaxUID", "")) in NATIVE_LITTLE_ENDIAN
    )


def run_parallel(tasks: list[Callable[[], None]], workers: int = 2) -> list[BaseException | None]:
    """Run ``tasks`` on a small thread pool (file reads release the GIL); one result (error or None) per task."""

    def guarded(task: Callable[[], None]) -> BaseException | None:
        try:
            task()
        except InputError as exc:
            return exc
        return None

    if len(tasks) < 4 or workers < 2:
        return [guarded(t) for t in tasks]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(guarded, tasks))


def decode_dataset(ds, path: Path, notes: list[str]) -> np.ndarray:
    """Decoded pixel array (pydicom) after checking the declared size against the stored bytes."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if ds.get("Rows") and ds.get("Columns"):
            raise InputError("DICOM file declares an image but holds no pixel data; the file is probably truncated", path)
        raise InputError("DICOM file has no pixel data (not an image: a report, structure set, DICOMDIR, or a truncated file)", path)
    fmt = PixelFormat.of(ds, path)
    if "PixelData" in ds:
        stored = len(ds.PixelData)
        ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
        shape = f"{fmt.rows}x{fmt.columns}x{fmt.frames} frames x {fmt.samples} samples at {fmt.bits_allocated} bits"
        if ts is not None and ts.is_compressed:
            if fmt.nbytes > max(stored, 1) * ENCAPSULATED_MAX_RATIO:
                raise InputError(
                    f"declared size {shape} ({fmt.nbytes} bytes) is impossible for {stored} bytes of compressed pixel data; "
                    "the header is corrupt",
                    path,
                )
        else:
            check_native_length(stored, None, fmt, path)
    check_allocation(path, fmt.nbytes, "DICOM image")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds.pixel_array_options(raw=False, as_rgb=True)  # YBR_FULL(_422) -> RGB, planar configuration interleaved
            arr = ds.pixel_array
    except PIXEL_ERRORS as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown") if ds.file_meta is not None else "unknown"
        raise InputError(
            f"cannot decode the pixel data (transfer syntax {getattr(ts, 'name', ts)}): {one_line(exc)}; "
            "install a decoder plugin (pylibjpeg, gdcm) or convert the file (dcmdjpeg)",
            path,
        ) from None
    notes.extend(f"{path.name}: {one_line(w.message)}" for w in caught)
    arr = np.asarray(arr)
    return arr if arr.flags.writeable else arr.copy()
