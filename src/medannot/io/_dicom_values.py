"""From stored DICOM pixel values to the values medannot works with: colour, inversion and the Modality LUT.

Used by :mod:`medannot.io.dicom` for every file, series and frame it reads, so training and inference see the
same pixels. The steps, in this order (each one that runs is named in ``Image.meta["pixel_steps"]``):

1. **Colour** (intensity images only; a label image keeps its stored values):

   * ``PALETTE COLOR``: the palette is applied with :func:`pydicom.pixels.apply_color_lut` -> RGB in the
     palette's bit depth (uint8 or uint16);
   * ``YBR_FULL`` / ``YBR_FULL_422``: converted to RGB by pydicom's decoder (``as_rgb``, the
     :func:`pydicom.pixels.convert_color_space` conversion), JPEG 2000 ``YBR_ICT``/``YBR_RCT`` by the codec;
   * planar configuration 1 (colour by plane) is interleaved by pydicom's decoder; medannot keeps colour
     channel-first ``(3, rows, columns)``.

2. **Presentation inversion**, as highdicom decides it (``apply_presentation_lut``): when PresentationLUTShape
   is ``INVERSE``, or it is absent and the image is ``MONOCHROME1``, the stored values are inverted over the range
   of values the header allows (BitsStored, PixelRepresentation): ``v -> min + max - v`` (``0..1023`` for
   10-bit unsigned data becomes ``1023..0``; signed data ``v -> -1 - v``). Done before the Modality LUT, so the
   result is highdicom's: ``lo + hi - value`` over the rescaled range. Higher values are then brighter, as a
   viewer shows the image. CT is ``MONOCHROME2``: its values (HU) are never inverted.

3. **Modality LUT** (grey images): ``RescaleSlope * v + RescaleIntercept`` (HU for CT), see :func:`apply_rescale`.

No VOI LUT or window is applied: values stay in modality units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medannot.data.image import ImageKind
from medannot.errors import InputError
from medannot.io._common import to_label_array
from medannot.io.dicom_geometry import Slice

__all__ = ["Photometric", "apply_rescale", "colour_to_channels_first", "invert_stored", "to_volume"]

_YBR = ("YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")


@dataclass(frozen=True)
class Photometric:
    """How one image's stored values become medannot's values (see the module docstring).

    Attributes:
        interpretation: PhotometricInterpretation as stored (``""`` when absent: treated as MONOCHROME2).
        invert: Whether the presentation inverts the values (MONOCHROME1, or PresentationLUTShape INVERSE).
        stored_min, stored_max: Range of the stored values (BitsStored, PixelRepresentation); the inversion
            maps it onto itself. ``None`` for float pixel data (inverted as ``-v``).
        planar: PlanarConfiguration of colour data (0 interleaved, 1 by plane).
    """

    interpretation: str
    invert: bool
    stored_min: int | None
    stored_max: int | None
    planar: int = 0

    @classmethod
    def of(cls, ds: Any) -> Photometric:
        """Read the photometric attributes of a header (no pixel data needed)."""
        pi = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
        invert = shape == "INVERSE" if shape else pi == "MONOCHROME1"
        if "PixelData" not in ds and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds):
            lo = hi = None
        else:
            bits = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 16))
            bits = min(max(bits, 1), 64)
            if _int(ds, "PixelRepresentation", 0) == 1:
                lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            else:
                lo, hi = 0, 2**bits - 1
        return cls(pi, invert, lo, hi, _int(ds, "PlanarConfiguration", 0))

    @property
    def is_palette(self) -> bool:
        """``PALETTE COLOR``: stored values index a colour table."""
        return self.interpretation == "PALETTE COLOR"

    @property
    def is_ybr(self) -> bool:
        """A YCbCr interpretation (decoded to RGB by pydicom)."""
        return self.interpretation in _YBR

    def inversion_step(self) -> str:
        """The step's description for ``meta["pixel_steps"]``."""
        why = "PresentationLUTShape INVERSE" if self.interpretation != "MONOCHROME1" else "MONOCHROME1"
        if self.stored_min is None or self.stored_max is None:
            return f"{why}: inverted (v -> -v, float pixel data)"
        return f"{why}: inverted over the stored range (v -> {self.stored_min} + {self.stored_max} - v), higher = brighter"


def _int(ds: Any, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    try:
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return default


def invert_stored(raw: np.ndarray, photometric: Photometric) -> np.ndarray:
    """``min + max - v`` over the stored range, in place when the dtype allows (see the module docstring).

    The result stays in the stored range and dtype (unsigned: ``max - v``; signed: ``-1 - v``); float data
    become ``-v``. The empty array is returned unchanged.
    """
    if raw.size == 0:
        return raw
    lo, hi = photometric.stored_min, photometric.stored_max
    if raw.dtype.kind == "f" or lo is None or hi is None:
        return np.negative(raw, out=raw) if raw.flags.writeable and raw.dtype.kind == "f" else -raw.astype(np.float32)
    if raw.dtype.kind == "u" and lo == 0 and hi <= np.iinfo(raw.dtype).max:
        out = raw if raw.flags.writeable else raw.copy()
        return np.subtract(raw.dtype.type(hi), out, out=out)
    if raw.dtype.kind == "i" and lo + hi == -1:
        out = raw if raw.flags.writeable else raw.copy()
        return np.invert(out, out=out)
    wide = raw.astype(np.int64)  # a decoder's dtype that does not match the declared range
    return (lo + hi) - wide


def colour_to_channels_first(arr: np.ndarray, ds: Any, photometric: Photometric, frames: int, path: Path | str) -> tuple[np.ndarray, list[str]]:
    """Decoded colour or palette pixels -> channel-first RGB ``(3, [frames,] rows, columns)`` and the steps done.

    Args:
        arr: pydicom's decoded array: ``([frames,] rows, columns[, samples])``.
        ds: The dataset (palette tables for ``PALETTE COLOR``).
        photometric: :meth:`Photometric.of` the dataset.
        frames: NumberOfFrames.
        path: Named in errors.

    Raises:
        InputError: A palette that pydicom cannot apply.
    """
    steps: list[str] = []
    if photometric.is_palette:
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except (ValueError, KeyError, AttributeError, IndexError) as exc:
            raise InputError(f"cannot apply the PALETTE COLOR lookup table ({' '.join(str(exc).split())})", path) from None
        steps.append(f"PALETTE COLOR -> RGB (pydicom apply_color_lut, {arr.dtype.itemsize * 8}-bit)")
    elif photometric.is_ybr:
        steps.append(f"{photometric.interpretation} -> RGB (pydicom decoder, as_rgb)")
    if photometric.planar == 1 and not photometric.is_palette:
        steps.append("PlanarConfiguration 1 (colour by plane) interleaved by pydicom")
    spatial = 3 if frames > 1 else 2
    if arr.ndim != spatial + 1 or arr.shape[-1] not in (3, 4):
        raise InputError(f"decoded colour pixels have shape {arr.shape}; expected {'(frames, ' if frames > 1 else '('}rows, columns, 3)", path)
    return np.moveaxis(arr[..., :3], -1, 0), steps


def apply_rescale(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """``slope * raw + intercept`` per slice of ``raw (N, ...)`` (the Modality LUT: HU for CT).

    int16 when the result is exact in int16 (computed in place, modulo 2**16, in the stored 16-bit buffer),
    otherwise float32. ``raw`` may be overwritten; the empty array is returned unchanged.
    """
    slopes = np.asarray(slopes, dtype=np.float64)
    intercepts = np.asarray(intercepts, dtype=np.float64)
    shape = (-1,) + (1,) * (raw.ndim - 1)
    identity = bool(np.all(slopes == 1) and np.all(intercepts == 0))
    if raw.size == 0 or (identity and raw.dtype.kind in "iu"):
        return raw  # stored values are already the modality values
    if raw.dtype.kind in "iu" and np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)):
        lo, hi = float(raw.min()), float(raw.max())
        ends = np.stack([slopes * lo + intercepts, slopes * hi + intercepts])
        if ends.min() >= np.iinfo(np.int16).min and ends.max() <= np.iinfo(np.int16).max:
            # exact modulo 2**16: (s * (v mod 2**16) + i) mod 2**16 == s * v + i, which fits int16
            if raw.dtype.itemsize == 2 and raw.flags.writeable:
                work = raw.view(np.uint16)
            else:
                work = raw.astype(np.uint16)
            if np.any(slopes != 1):
                np.multiply(work, np.mod(slopes, 65536).astype(np.uint16).reshape(shape), out=work)
            if np.any(intercepts != 0):
                icpt = np.mod(intercepts, 65536).astype(np.uint16)
                np.add(work, icpt[0] if np.all(icpt == icpt[0]) else icpt.reshape(shape), out=work)
            return work.view(np.int16)
    if identity:
        return raw.astype(np.float32, copy=False)
    out = np.multiply(raw, slopes.astype(np.float32).reshape(shape), dtype=np.float32)
    out += intercepts.astype(np.float32).reshape(shape)
    return out


def rescale_step(slopes: np.ndarray, intercepts: np.ndarray) -> str | None:
    """``meta["pixel_steps"]`` entry of the Modality LUT, ``None`` when it is the identity."""
    slopes, intercepts = np.asarray(slopes, np.float64), np.asarray(intercepts, np.float64)
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return None
    if np.all(slopes == slopes.flat[0]) and np.all(intercepts == intercepts.flat[0]):
        return f"Modality LUT: v * {slopes.flat[0]:g} + {intercepts.flat[0]:g} (RescaleSlope, RescaleIntercept)"
    return "Modality LUT: per-frame RescaleSlope / RescaleIntercept"


def grey_values(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, photometric: Photometric, kind: ImageKind) -> tuple[np.ndarray, list[str]]:
    """Stored grey values ``(N, ...)`` -> modality values (inversion when the presentation asks for it, then the
    Modality LUT); a label image is only rescaled. Returns the values and the steps done."""
    steps: list[str] = []
    if photometric.invert and kind is ImageKind.INTENSITY:
        raw = invert_stored(raw, photometric)
        steps.append(photometric.inversion_step())
    values = apply_rescale(raw, slopes, intercepts)
    step = rescale_step(slopes, intercepts)
    if step:
        steps.append(step)
    return values, steps


def to_volume(raw: np.ndarray, slices: list[Slice], kind: ImageKind, where: Path, photometrics: list[Photometric]) -> tuple[np.ndarray, list[str]]:
    """Raw frames ``(N, rows, cols)`` -> values ``(1, cols, rows, N)`` (a transposed view: no copy) and the steps.

    ``photometrics`` holds one :class:`Photometric` per frame: frames whose presentation inverts are inverted
    (each over its own stored range) before the per-frame Modality LUT.
    """
    steps: list[str] = []
    if kind is ImageKind.INTENSITY and any(ph.invert for ph in photometrics):
        if len(set(photometrics)) == 1:
            raw = invert_stored(raw, photometrics[0])
        else:
            raw = np.stack([invert_stored(raw[k], ph) if ph.invert else raw[k] for k, ph in enumerate(photometrics)])
        steps.append(next(ph for ph in photometrics if ph.invert).inversion_step())
    slopes, intercepts = np.array([s.slope for s in slices]), np.array([s.intercept for s in slices])
    values = apply_rescale(raw, slopes, intercepts)
    step = rescale_step(slopes, intercepts)
    if step:
        steps.append(step)
    if kind is ImageKind.LABEL:
        values = to_label_array(values, where)
    return values.transpose(2, 1, 0)[None], steps
