"""Contrast enhancement (scikit-image ``exposure``): stretch, histogram equalisation, CLAHE, gamma.

Each works per channel, returns float32 and refuses label maps. Histogram equalisation and
CLAHE return values in 0..1; contrast stretch and gamma keep the channel's intensity range.
CLAHE is n-dimensional (skimage ``equalize_adapthist``), so 3D volumes get 3D tiles; its
internals use float64 of the input's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import exposure

from medannot.data.image import Image
from medannot.errors import ConfigError
from medannot.transforms.intensity import per_channel, require_intensity, rescale_array
from medannot.transforms.registry import TransformKind, register_transform

__all__ = ["clahe", "contrast_stretch", "gamma", "histogram_equalise"]


@register_transform("contrast_stretch", TransformKind.INTENSITY)
def contrast_stretch(image: Image, lower: float = 2.0, upper: float = 98.0) -> Image:
    """Stretch the ``lower``..``upper`` percentiles over the channel's full min..max range (clipped).

    Unlike :func:`~medannot.transforms.intensity.percentile_normalise` (which maps to 0..1),
    the result keeps the input's units range. A constant channel is returned as is.

    Args:
        image: Intensity image.
        lower: Lower percentile (0..100).
        upper: Upper percentile (> lower).
    """
    require_intensity(image, "contrast_stretch")
    if not 0.0 <= lower < upper <= 100.0:
        raise ConfigError(f"contrast_stretch: need 0 <= lower < upper <= 100 (percent), got {lower}, {upper}")

    def one(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, [lower, upper])
        if hi == lo:
            return a.astype(np.float32)
        return rescale_array(a, float(lo), float(hi), float(a.min()), float(a.max()), clip=True)

    return per_channel(image, one)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return rescale_array(a, lo, hi, 0.0, 1.0)


@register_transform("histogram_equalise", TransformKind.INTENSITY)
def histogram_equalise(image: Image, nbins: int = 256) -> Image:
    """Global histogram equalisation (skimage ``equalize_hist``); output 0..1 float32.

    Args:
        image: Intensity image.
        nbins: Number of histogram bins.
    """
    require_intensity(image, "histogram_equalise")
    if nbins < 2:
        raise ConfigError(f"histogram_equalise: nbins must be >= 2, got {nbins}")
    return per_channel(image, lambda a: exposure.equalize_hist(a.astype(np.float32, copy=False), nbins=nbins))


@register_transform("clahe", TransformKind.INTENSITY)
def clahe(
    image: Image,
    kernel_size_mm: float | list[float] | None = None,
    clip_limit: float = 0.01,
    nbins: int = 256,
) -> Image:
    """Contrast-limited adaptive histogram equalisation (skimage ``equalize_adapthist``, 2D or 3D).

    Each channel is first min-max scaled to 0..1 (a named, explicit step, no dtype guessing).

    Args:
        image: Intensity image.
        kernel_size_mm: Tile size in mm (one value or one per axis); None = skimage's default
            (1/8 of each axis).
        clip_limit: Clipping limit, 0..1 (higher = more contrast).
        nbins: Number of histogram bins.

    Returns:
        float32 image in 0..1.
    """
    require_intensity(image, "clahe")
    if not 0.0 <= clip_limit <= 1.0:
        raise ConfigError(f"clahe: clip_limit must be in 0..1, got {clip_limit}")
    kernel: Sequence[int] | None = None
    if kernel_size_mm is not None:
        ks = [float(kernel_size_mm)] * image.ndim if isinstance(kernel_size_mm, (int, float)) else list(kernel_size_mm)
        if len(ks) != image.ndim or min(ks) <= 0:
            raise ConfigError(f"clahe: kernel_size_mm must be > 0 mm, one value or {image.ndim}, got {kernel_size_mm!r}")
        kernel = [max(2, int(round(k / s))) for k, s in zip(ks, image.spacing)]

    def one(a: np.ndarray) -> np.ndarray:
        return exposure.equalize_adapthist(_unit(a), kernel_size=kernel, clip_limit=clip_limit, nbins=nbins)

    return per_channel(image, one)


def gamma_array(a: np.ndarray, gamma: float) -> np.ndarray:
    """``min + (max - min) * ((a - min) / (max - min)) ** gamma``; float32. Constant input unchanged."""
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        return a.astype(np.float32)
    u = rescale_array(a, lo, hi, 0.0, 1.0)
    np.power(u, np.float32(gamma), out=u)
    return rescale_array(u, 0.0, 1.0, lo, hi)


@register_transform("gamma", TransformKind.INTENSITY)
def gamma(image: Image, gamma: float) -> Image:
    """Gamma correction within the channel's own range: min..max -> 0..1, power ``gamma``, back.

    Args:
        image: Intensity image.
        gamma: Exponent (> 0); < 1 brightens, > 1 darkens.
    """
    require_intensity(image, "gamma")
    if not gamma > 0:
        raise ConfigError(f"gamma: gamma must be > 0, got {gamma}")
    return per_channel(image, lambda a: gamma_array(a, gamma))
