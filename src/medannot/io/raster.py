"""2D pictures (PNG, JPEG, BMP via Pillow; TIFF via tifffile) and TIFF 3D stacks.

Reading (2D): grey -> ``(1, H, W)``, RGB -> ``(3, H, W)`` (RGB whose three channels are identical -> ``(1, H, W)``,
noted in ``meta["pixel_steps"]``), an alpha channel is dropped,
16-bit samples keep their dtype (no implicit rescaling). The geometry is 2D with the
identity direction and 1 mm spacing, unless a TIFF states its resolution in a physical
unit (inch, cm, mm, um, or an ImageJ unit), which is then converted to mm per pixel.
Array axes are ``(row, column)``.

A TIFF holding several pages / slices is refused by the 2D reader; read it explicitly as a
3D stack with :func:`read_tiff_stack` (array ``(C, Z, Y, X)``, spacing ``(z, y, x)`` mm).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from pathlib import Path

import numpy as np

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import InputError, OutputError
from medannot.io._common import (
    check_allocation,
    check_readable_file,
    count_nonfinite,
    label_dtype_for_writing,
    parse_kind,
    to_label_array,
)
from medannot.io._png import check_png
from medannot.io.atomic import atomic_path
from medannot.io.colour import colour_note, same_channels
from medannot.io.limits import check_picture_pixels

__all__ = ["read_raster", "read_tiff_stack", "write_raster"]

_TIFF_SUFFIXES = (".tif", ".tiff")
#: Pixel sizes a file may give (mm): outside these its resolution tags are damaged.
_MIN_SPACING_MM, _MAX_SPACING_MM = 1e-6, 1e5
_UNIT_TO_MM = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    "cm": 10.0, "centimeter": 10.0, "centimetre": 10.0,
    "m": 1000.0, "meter": 1000.0, "metre": 1000.0,
    "um": 1e-3, "micron": 1e-3, "microns": 1e-3, "\u00b5m": 1e-3, "\u03bcm": 1e-3, "micrometer": 1e-3,
    "nm": 1e-6, "nanometer": 1e-6, "inch": 25.4, "in": 25.4,
}  # fmt: skip
_BYTES_PER_SAMPLE = {"1": 0.125, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _finish(arr: np.ndarray, spacing: tuple[float, ...], kind: ImageKind, path: Path, meta: dict) -> Image:
    if arr.dtype.kind == "c":
        raise InputError(f"pixels are complex numbers ({arr.dtype}); medannot reads real-valued images: save the magnitude", path)
    if kind is ImageKind.INTENSITY:
        bad = count_nonfinite(arr)
        if bad:
            raise InputError(f"{bad} of {arr.size} pixel values are NaN or infinite; medannot needs finite intensities: replace them "
                             "(e.g. by 0) and save the picture again", path)
    if any(not (_MIN_SPACING_MM <= s <= _MAX_SPACING_MM) for s in spacing):
        raise InputError(f"the file gives pixel sizes of {', '.join(f'{s:.3g}' for s in spacing)} mm (from its resolution); expected "
                         f"{_MIN_SPACING_MM:g} to {_MAX_SPACING_MM:g} mm: the resolution tags are damaged", path)
    if same_channels(arr):  # a grey picture stored as RGB: one grey channel, said in meta
        arr = arr[:1]
        meta = {**meta, "pixel_steps": [*meta.get("pixel_steps", []), "R, G and B identical: read as one grey channel"]}
    if kind is ImageKind.LABEL:
        if arr.shape[0] != 1:
            raise InputError(
                f"expected a single-channel label image (grey or palette), received {arr.shape[0]} channels{colour_note(arr.shape[0])}", path
            )
        arr = to_label_array(arr, path)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    meta = {"source": str(path), **meta}
    return Image(np.ascontiguousarray(arr), Geometry(spacing=spacing), kind, meta)


# ----------------------------------------------------------------------------- Pillow


def _pil_array(im, kind: ImageKind, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("LA", "La"):
        im, mode = im.convert("L"), "L"
    if mode == "PA":
        im, mode = im.convert("P"), "P"
    if mode == "P":
        pal = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        top = int(np.asarray(im).max(initial=0))
        if top >= len(pal):
            raise InputError(f"palette picture whose pixels use colour {top} of a palette of {len(pal)} colours; the file is damaged",
                             path)
        if kind is ImageKind.LABEL:
            return np.asarray(im)[None]
        used = np.unique(np.asarray(im))
        grey = len(pal) > 0 and bool(np.all(pal[used, 0] == pal[used, 1]) and np.all(pal[used, 1] == pal[used, 2]))
        im, mode = im.convert("L" if grey else "RGB"), "L" if grey else "RGB"
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr[None]
    if mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    return np.moveaxis(arr[..., :3], -1, 0)


def _read_pillow(path: Path, kind: ImageKind, blob: bytes | None = None) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            # a palette's transparency (tRNS) is dropped with the alpha channel, as for RGBA pictures
            warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)
            with PILImage.open(io.BytesIO(blob) if blob is not None else path) as im:
                w, h = im.size
                bands = len(im.getbands())
                nbytes = int(w * h * bands * _BYTES_PER_SAMPLE.get(im.mode, 1))
                if nbytes == 0:
                    raise InputError(f"header declares {w} x {h} pixels; the file is damaged", path)
                check_picture_pixels(path, h, w, im.format or "picture")
                size = len(blob) if blob is not None else path.stat().st_size
                check_allocation(path, nbytes, f"{im.format or 'picture'} of {w} x {h}", size, kind is ImageKind.LABEL)
                frames = int(getattr(im, "n_frames", 1))
                if frames > 1:
                    raise InputError(f"picture has {frames} frames; expected a single 2D image", path)
                if im.format == "PNG":  # Pillow reads a PNG cut inside its image data, or with rows missing, silently
                    with io.BytesIO(blob) if blob is not None else open(path, "rb") as fh:
                        check_png(fh, size, path)
                im.load()
                fmt = im.format
                arr = _pil_array(im, kind, path)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError("not a readable picture (Pillow cannot identify it); expected a PNG, JPEG or BMP file", path) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, PILImage.DecompressionBombError) as exc:
        raise InputError(f"cannot decode the picture, it is probably truncated or corrupt ({_one_line(exc)})", path) from None
    return _finish(arr, (1.0, 1.0), kind, path, {"format": (fmt or "picture").lower()})


# ----------------------------------------------------------------------------- TIFF


def _tiff_spacing_mm(tif, page) -> tuple[tuple[float, float] | None, float | None]:
    """((row, col) spacing in mm or None, z spacing in mm or None) from TIFF tags / ImageJ / shaped metadata."""
    import tifffile

    rowcol: tuple[float, float] | None = None
    z: float | None = None
    try:
        xres, yres = page.resolution
    except (AttributeError, ValueError, TypeError, ZeroDivisionError):
        xres = yres = 0.0
    unit = page.resolutionunit
    ij = tif.imagej_metadata or {}
    if unit != tifffile.RESUNIT.NONE and xres > 0 and yres > 0:
        xpm, ypm = page.get_resolution("millimeter")
        rowcol = (1.0 / ypm, 1.0 / xpm)
    elif ij:
        factor = _UNIT_TO_MM.get(str(ij.get("unit", "")).strip().lower())
        if factor is not None:
            if xres > 0 and yres > 0:
                rowcol = (factor / yres, factor / xres)
            if float(ij.get("spacing", 0) or 0) > 0:
                z = float(ij["spacing"]) * factor
    if tif.is_shaped:
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
        sp = shaped.get("spacing_mm")
        if isinstance(sp, (list, tuple)) and len(sp) == 3 and all(float(s) > 0 for s in sp):
            z = float(sp[0])
    return rowcol, z


def _tiff_check_sizes(tif, path: Path, size: int, label: bool) -> None:
    series = tif.series[0]
    first = tif.pages[0]  # one plane; a stack of planes is a volume, bounded by bytes
    check_picture_pixels(path, int(first.imagelength), int(first.imagewidth), "TIFF page")
    compressed = any(page.compression != 1 for page in tif.pages)
    check_allocation(path, int(series.nbytes), "TIFF image", size if compressed else None, label)
    for page in tif.pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        if offsets and counts and max(o + c for o, c in zip(offsets, counts)) > size:
            raise InputError(
                f"pixel data end beyond the file ({max(o + c for o, c in zip(offsets, counts))} > {size} bytes); "
                "the file is truncated",
                path,
            )
        if page.compression == 1 and sum(counts) < page.nbytes:
            raise InputError(
                f"pixel data shorter than declared ({sum(counts)} < {page.nbytes} bytes); the file is truncated or corrupt",
                path,
            )


def _read_tiff(path: Path, kind: ImageKind, stack: bool, blob: bytes | None = None) -> Image:
    import tifffile

    log = logging.getLogger("tifffile")  # tifffile logs what it skips; medannot decides (refuse or read) and says so itself
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        with tifffile.TiffFile(io.BytesIO(blob) if blob is not None else path) as tif:
            if not tif.series:
                raise InputError("TIFF holds no image", path)
            _tiff_check_sizes(tif, path, len(blob) if blob is not None else path.stat().st_size, kind is ImageKind.LABEL)
            series = tif.series[0]
            shape, axes = tuple(series.shape), series.axes
            rowcol, zsp = _tiff_spacing_mm(tif, series.pages[0] if series.pages else tif.pages[0])
            data = series.asarray()
    except InputError:
        raise
    except ImportError:  # tifffile imports a codec only when a page needs it (zstd, JPEG XL, ...)
        names = sorted({str(getattr(page.compression, "name", page.compression)) for page in tif.pages}) if "tif" in locals() else []
        raise InputError(f"TIFF compression {', '.join(names) or '(unknown)'} cannot be decoded here (no codec for it is installed); "
                         "save the image uncompressed or with LZW/deflate", path) from None
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, struct.error, IndexError, KeyError, RuntimeError, TypeError,
            ZeroDivisionError, OverflowError, NotImplementedError, MemoryError) as exc:
        raise InputError(f"not a readable TIFF file ({_one_line(exc)[:160]})", path) from None
    finally:
        log.setLevel(level)
    if data.size != int(np.prod(shape)):
        raise InputError(f"decoded {data.size} pixel values, the file declares {' x '.join(map(str, shape))}; the file is damaged",
                         path)
    keep = [i for i, s in enumerate(shape) if s != 1 or axes[i] in "YX"]
    data = data.reshape([shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"TIFF axes {series.axes} have no Y and X; cannot read it as an image", path)
    chan = [a for a in axes if a in "SC"]
    other = [a for a in axes if a not in "SCYX"]
    if len(chan) > 1:
        raise InputError(f"TIFF has axes {series.axes} (shape {shape}); expected at most one channel axis", path)
    order = [axes.index(a) for a in chan] + [axes.index(a) for a in other] + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    if not chan:
        data = data[None]
    elif chan[0] == "S" and data.shape[0] in (2, 4):  # grey+alpha / RGBA: drop alpha
        data = data[: data.shape[0] - 1]
    if data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("="))
    rc = rowcol or (1.0, 1.0)
    meta = {"format": "tiff", "tiff_axes": series.axes}
    if not stack:
        if other:
            n = int(np.prod([data.shape[1 + i] for i in range(len(other))]))
            raise InputError(
                f"TIFF holds {n} pages/slices (axes {series.axes}, shape {shape}); expected one 2D image. "
                "Read it as a 3D stack with medannot.io.raster.read_tiff_stack",
                path,
            )
        return _finish(data, rc, kind, path, meta)
    if len(other) > 1:
        raise InputError(f"TIFF has axes {series.axes} (shape {shape}); a 3D stack needs exactly one slice axis", path)
    if not other:
        data = data[:, None]
    return _finish(data, (zsp or 1.0, *rc), kind, path, meta)


# ----------------------------------------------------------------------------- public


def read_raster(path: str | Path | bytes, kind: ImageKind | str | None = None, *, stack: bool = False, name: str | None = None) -> Image:
    """Read a PNG / JPEG / BMP / TIFF picture as a 2D image (or a TIFF as a 3D stack).

    Args:
        path: The file, or its bytes (the format is told by the bytes: TIFF by its header, others by Pillow).
        kind: ``"intensity"`` (default) or ``"label"`` (single channel, unsigned integer dtype).
        stack: Read a multi-page / 3D TIFF as a 3D image ``(C, Z, Y, X)``; TIFF only.
        name: The file's name when ``path`` is bytes (messages, ``meta["source"]``).

    Returns:
        2D image ``(C, H, W)`` (or 3D when ``stack``); spacing 1 mm unless the TIFF states it.

    Raises:
        InputError: Missing / empty / corrupt file, several pages without ``stack``, RGB labels.
    """
    kind = parse_kind(kind)
    blob: bytes | None = None
    if isinstance(path, (bytes, bytearray, memoryview)):
        blob = bytes(path)
        p, head = Path(name or "<bytes>"), blob[:512]
        if not blob:
            raise InputError("file is empty (0 bytes); the copy or upload probably failed", p)
    else:
        p, head = check_readable_file(path)
    is_tiff = head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    if p.name.lower().endswith(_TIFF_SUFFIXES) or is_tiff:
        if not is_tiff:
            raise InputError("not a TIFF file although it is named .tif/.tiff (no TIFF header)", p)
        return _read_tiff(p, kind, stack, blob)
    if stack:
        raise InputError("only TIFF files can be read as 3D stacks", p)
    return _read_pillow(p, kind, blob)


def read_tiff_stack(path: str | Path, kind: ImageKind | str | None = None) -> Image:
    """Read a multi-page / 3D TIFF as a 3D image ``(C, Z, Y, X)`` with spacing ``(z, y, x)`` mm.

    A single-page TIFF becomes a one-slice stack. See :func:`read_raster`.
    """
    return read_raster(path, kind, stack=True)


def _raster_array(image: Image, path: Path, suffix: str) -> np.ndarray:
    arr = image.array
    if image.is_label:
        if image.channels != 1:
            raise OutputError(f"label images must have one channel, received {image.channels}", path)
        dt = label_dtype_for_writing(arr)
        if suffix == ".png" and dt.itemsize > 2:
            raise OutputError(f"PNG stores at most 65535 labels (max label {int(arr.max())}); write NIfTI or TIFF", path)
        return arr.astype(dt, copy=False)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if suffix == ".png" and arr.dtype not in (np.uint8, np.uint16):
        raise OutputError(
            f"PNG stores uint8/uint16 intensities, received {arr.dtype}; rescale with a named intensity step "
            "(e.g. percentile_normalise then *255 as uint8) or write TIFF/NIfTI",
            path,
        )
    if suffix == ".png" and arr.dtype == np.uint16 and image.channels != 1:
        raise OutputError("16-bit RGB PNG is not supported; write TIFF instead", path)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return arr


def write_raster(image: Image, path: str | Path) -> Path:
    """Write a 2D image to PNG or TIFF, or a 3D image to a multi-page TIFF, atomically.

    Labels are stored as uint8 (uint16 above 255 labels). PNG keeps uint8/uint16 only and
    stores no spacing; TIFF stores the pixel spacing (as a resolution in px/cm) and, for
    stacks, the slice spacing in its description. Images need 1 or 3 channels (2D) / 1 (3D).

    Raises:
        OutputError: Unsupported suffix, channel count or dtype, or the file cannot be written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise OutputError(f"expected a .png, .tif or .tiff file name, received {p.suffix!r}", p)
    if image.ndim == 3 and suffix == ".png":
        raise OutputError("PNG holds 2D images only; write the 3D image as .nii.gz or .tif", p)
    if image.channels not in (1, 3) or (image.ndim == 3 and image.channels != 1):
        raise OutputError(f"cannot store {image.channels} channels in a {suffix} {image.ndim}D picture; expected 1 or 3", p)
    arr = _raster_array(image, p, suffix)
    try:
        with atomic_path(p) as tmp:
            if suffix == ".png":
                from PIL import Image as PILImage

                pic = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
                PILImage.fromarray(np.ascontiguousarray(pic)).save(tmp, format="PNG")
            else:
                import tifffile

                sp = image.spacing
                res = (10.0 / sp[-1], 10.0 / sp[-2])  # pixels per cm along x (columns), y (rows)
                if image.ndim == 2 and arr.shape[0] == 3:
                    tifffile.imwrite(tmp, np.moveaxis(arr, 0, -1), photometric="rgb", resolution=res,
                                     resolutionunit="CENTIMETER")  # fmt: skip
                elif image.ndim == 2:
                    tifffile.imwrite(tmp, arr[0], photometric="minisblack", resolution=res, resolutionunit="CENTIMETER")
                else:
                    meta = {"axes": "ZYX", "spacing_mm": [float(s) for s in sp]}
                    tifffile.imwrite(tmp, arr[0], photometric="minisblack", resolution=res, resolutionunit="CENTIMETER",
                                     metadata=meta)  # fmt: skip
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the picture ({_one_line(exc)}); check the folder is writable", p) from exc
    return p
