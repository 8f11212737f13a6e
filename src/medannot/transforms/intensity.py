"""Intensity transforms: CT windowing, z-score, percentile and min-max rescaling.

Each transform is written once on arrays (``*_array``) and wrapped for :class:`Image`.
Multi-channel images are processed per channel. Results are float32; the input is never
modified. Label maps are refused (an intensity change on labels is always a mistake).

Equivalents in MONAI (tested against them in tests/transforms): ``ScaleIntensityRange``
(ct_window), ``NormalizeIntensity`` (zscore_normalise), ``ScaleIntensityRangePercentiles``
(percentile_normalise), ``ScaleIntensity`` (rescale_intensity). The NumPy versions here are
used because they avoid MONAI's tensor round trip and float64 temporaries.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medannot.data.image import Image
from medannot.errors import ConfigError, InputError
from medannot.transforms.registry import TransformKind, register_transform

__all__ = [
    "ct_window",
    "percentile_normalise",
    "rescale_intensity",
    "zscore_normalise",
]


def require_intensity(image: Image, what: str) -> None:
    """Raise InputError when an intensity transform is given a label map."""
    if image.is_label:
        raise InputError(f"{what} changes intensities and expects an intensity image, got a label map; "
                         "apply it to the image, not to the labels")


def per_channel(image: Image, fn: Callable[[np.ndarray], np.ndarray]) -> Image:
    """Apply an array function to each channel of ``image``; float32 result on the same grid."""
    out = np.empty(image.array.shape, dtype=np.float32)
    for c in range(image.channels):
        out[c] = fn(image.array[c])
    return image.with_array(out)


def _float32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32, copy=True)


def ct_window_array(array: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``[level - width/2, level + width/2]`` (e.g. HU) linearly to 0..1, clipped; float32."""
    if not width > 0:
        raise ConfigError(f"ct_window: width must be > 0 (HU), got {width}")
    lo = level - width / 2.0
    out = _float32(array)
    out -= np.float32(lo)
    out /= np.float32(width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


@register_transform("ct_window", TransformKind.INTENSITY)
def ct_window(image: Image, level: float, width: float) -> Image:
    """CT window: HU in ``[level - width/2, level + width/2]`` -> 0..1 (clipped), float32.

    Args:
        image: CT image in Hounsfield units.
        level: Window centre (HU), e.g. 40 for soft tissue, 400 for bone.
        width: Window width (HU, > 0), e.g. 400 for soft tissue, 1800 for bone.
    """
    require_intensity(image, "ct_window")
    return image.with_array(ct_window_array(image.array, level, width))


def _mask_for(mask: np.ndarray | Image | None, image: Image) -> np.ndarray | None:
    if mask is None:
        return None
    arr = mask.array if isinstance(mask, Image) else np.asarray(mask)
    if arr.ndim == image.ndim + 1:
        if arr.shape[0] != 1:
            raise InputError(f"mask must have one channel, got shape {arr.shape}")
        arr = arr[0]
    if arr.shape != image.spatial_shape:
        raise InputError(f"mask shape {arr.shape} differs from the image's spatial shape {image.spatial_shape}; "
                         "resample the mask onto the image grid first")
    return arr.astype(bool, copy=False)


def zscore_array(array: np.ndarray, mask: np.ndarray | None = None, nonzero: bool = False) -> np.ndarray:
    """Per channel ``(x - mean) / std`` with statistics over ``mask`` (or non-zero voxels); float32.

    Voxels outside the mask are normalised too (with the mask's statistics) unless ``nonzero``
    is set, in which case zero voxels stay 0 (MONAI ``NormalizeIntensity(nonzero=True)``).
    A constant channel (std 0) is only shifted.

    Raises:
        InputError: If the mask selects no voxel.
    """
    out = _float32(array)
    for c in range(out.shape[0]):
        chan = out[c]
        sel = np.ones(chan.shape, dtype=bool) if mask is None else mask
        if nonzero:
            sel = sel & (chan != 0)
        vals = chan[sel] if (mask is not None or nonzero) else chan
        if vals.size == 0:
            raise InputError("zscore_normalise: the mask selects no voxel; give a non-empty mask")
        mean = float(vals.mean(dtype=np.float64))
        std = float(vals.std(dtype=np.float64))
        std = std if std > 0 else 1.0
        if nonzero:
            chan[sel] = (chan[sel] - np.float32(mean)) / np.float32(std)
        else:
            chan -= np.float32(mean)
            chan /= np.float32(std)
    return out


@register_transform("zscore_normalise", TransformKind.INTENSITY)
def zscore_normalise(image: Image, mask: np.ndarray | Image | None = None, nonzero: bool = False) -> Image:
    """Z-score per channel: subtract the mean, divide by the standard deviation; float32.

    Args:
        image: Intensity image.
        mask: Optional boolean/label mask (spatial shape) selecting the voxels the statistics use.
        nonzero: Use only non-zero voxels for the statistics and leave zeros at 0.

    Raises:
        InputError: If the mask is empty or does not fit the image.
    """
    require_intensity(image, "zscore_normalise")
    return image.with_array(zscore_array(image.array, _mask_for(mask, image), nonzero))


def rescale_array(
    array: np.ndarray,
    in_min: float,
    in_max: float,
    out_min: float = 0.0,
    out_max: float = 1.0,
    clip: bool = True,
) -> np.ndarray:
    """Map ``[in_min, in_max]`` linearly to ``[out_min, out_max]``; float32.

    When ``in_max == in_min`` every voxel becomes ``out_min``.
    """
    out = _float32(array)
    if in_max == in_min:
        out.fill(out_min)
        return out
    out -= np.float32(in_min)
    out *= np.float32((out_max - out_min) / (in_max - in_min))
    out += np.float32(out_min)
    if clip:
        np.clip(out, min(out_min, out_max), max(out_min, out_max), out=out)
    return out


def percentile_array(array: np.ndarray, lower: float, upper: float, clip: bool = True) -> np.ndarray:
    """Per channel, map the ``lower``/``upper`` percentiles to 0/1; float32 (see percentile_normalise)."""
    if not 0.0 <= lower < upper <= 100.0:
        raise ConfigError(f"percentile_normalise: need 0 <= lower < upper <= 100 (percent), got {lower}, {upper}")
    out = np.empty(array.shape, dtype=np.float32)
    for c in range(array.shape[0]):
        lo, hi = np.percentile(array[c], [lower, upper])
        out[c] = rescale_array(array[c], float(lo), float(hi), 0.0, 1.0, clip)
    return out


@register_transform("percentile_normalise", TransformKind.INTENSITY)
def percentile_normalise(image: Image, lower: float = 0.5, upper: float = 99.5, clip: bool = True) -> Image:
    """Map the ``lower`` and ``upper`` percentiles of each channel to 0 and 1; float32.

    Args:
        image: Intensity image.
        lower: Lower percentile (0..100).
        upper: Upper percentile (0..100, > lower).
        clip: Clip the result to 0..1.

    A channel whose two percentiles are equal (e.g. constant) becomes all 0.
    """
    require_intensity(image, "percentile_normalise")
    return image.with_array(percentile_array(image.array, lower, upper, clip))


@register_transform("rescale_intensity", TransformKind.INTENSITY)
def rescale_intensity(
    image: Image,
    out_min: float = 0.0,
    out_max: float = 1.0,
    in_min: float | None = None,
    in_max: float | None = None,
    clip: bool = True,
) -> Image:
    """Linearly map ``[in_min, in_max]`` (default: each channel's min and max) to ``[out_min, out_max]``.

    Args:
        image: Intensity image.
        out_min: Output value for ``in_min``.
        out_max: Output value for ``in_max``.
        in_min: Input value mapped to ``out_min`` (default: channel minimum).
        in_max: Input value mapped to ``out_max`` (default: channel maximum).
        clip: Clip the result to the output range.

    A constant channel becomes ``out_min``.
    """
    require_intensity(image, "rescale_intensity")
    out = np.empty(image.array.shape, dtype=np.float32)
    for c in range(image.channels):
        chan = image.array[c]
        lo = float(chan.min()) if in_min is None else float(in_min)
        hi = float(chan.max()) if in_max is None else float(in_max)
        out[c] = rescale_array(chan, lo, hi, out_min, out_max, clip)
    return image.with_array(out)
