"""Smoothing and frequency-domain filters with physical (mm) parameters.

Spatial filters (scipy.ndimage): mean and median over a box of ``radius_mm`` per side and a
Gaussian of ``sigma_mm``; both turn mm into voxels per axis, so anisotropic grids are smoothed
isotropically in the world. Frequency filters (scipy.fft, real FFT, periodic boundary) take
cut-offs in cycles/mm, computed from the spacing, with a Butterworth or Gaussian window.

Every filter works on each channel separately, returns float32 and refuses label maps.
Borders: spatial filters extend edge values (``mode="nearest"``); FFT filters wrap around.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np
from scipy import fft
from scipy import ndimage as ndi

from medannot.data.image import Image
from medannot.errors import ConfigError
from medannot.transforms.intensity import per_channel, require_intensity
from medannot.transforms.registry import TransformKind, register_transform

__all__ = [
    "FrequencyWindow",
    "bandpass",
    "frequency_filter_array",
    "gaussian_smooth",
    "highpass",
    "lowpass",
    "mean_filter",
    "median_filter",
]


class FrequencyWindow(enum.StrEnum):
    """Shape of a frequency-domain window."""

    BUTTERWORTH = "butterworth"
    GAUSSIAN = "gaussian"


def _parse_window(window: str) -> FrequencyWindow:
    try:
        return FrequencyWindow(window)
    except ValueError:
        valid = ", ".join(w.value for w in FrequencyWindow)
        raise ConfigError(f"unknown frequency window {window!r}; expected one of: {valid}") from None


def _box_size(radius_mm: float, spacing: Sequence[float], what: str) -> tuple[int, ...]:
    if radius_mm < 0:
        raise ConfigError(f"{what}: radius_mm must be >= 0 mm, got {radius_mm}")
    return tuple(2 * int(round(radius_mm / s)) + 1 for s in spacing)


@register_transform("mean_filter", TransformKind.INTENSITY)
def mean_filter(image: Image, radius_mm: float) -> Image:
    """Mean over a box reaching ``radius_mm`` from the centre along each axis (rounded to voxels).

    Args:
        image: Intensity image.
        radius_mm: Half-width of the box in mm; below half a voxel along an axis means no smoothing there.
    """
    require_intensity(image, "mean_filter")
    size = _box_size(radius_mm, image.spacing, "mean_filter")
    return per_channel(image, lambda a: ndi.uniform_filter(a.astype(np.float32, copy=False), size, mode="nearest"))


@register_transform("median_filter", TransformKind.INTENSITY)
def median_filter(image: Image, radius_mm: float) -> Image:
    """Median over a box reaching ``radius_mm`` from the centre along each axis (rounded to voxels).

    Args:
        image: Intensity image.
        radius_mm: Half-width of the box in mm.
    """
    require_intensity(image, "median_filter")
    size = _box_size(radius_mm, image.spacing, "median_filter")
    return per_channel(image, lambda a: ndi.median_filter(a, size=size, mode="nearest"))


@register_transform("gaussian_smooth", TransformKind.INTENSITY)
def gaussian_smooth(image: Image, sigma_mm: float | list[float], truncate: float = 4.0) -> Image:
    """Gaussian smoothing with standard deviation ``sigma_mm`` (mm), converted per axis to voxels.

    Args:
        image: Intensity image.
        sigma_mm: Standard deviation in mm (one value, or one per axis).
        truncate: Kernel extent in standard deviations.
    """
    require_intensity(image, "gaussian_smooth")
    sig = [float(sigma_mm)] * image.ndim if isinstance(sigma_mm, (int, float)) else [float(s) for s in sigma_mm]
    if len(sig) != image.ndim or min(sig) < 0:
        raise ConfigError(f"gaussian_smooth: sigma_mm must be >= 0 mm, one value or {image.ndim}, got {sigma_mm!r}")
    sigma_vox = [s / sp for s, sp in zip(sig, image.spacing)]
    return per_channel(
        image, lambda a: ndi.gaussian_filter(a, sigma_vox, mode="nearest", truncate=truncate, output=np.float32)
    )


def _frequency_radius(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """|f| in cycles/mm on the rfftn grid (last axis halved)."""
    n = len(shape)
    sq = None
    for ax, (s, sp) in enumerate(zip(shape, spacing)):
        f = fft.rfftfreq(s, d=sp) if ax == n - 1 else fft.fftfreq(s, d=sp)
        shp = [1] * n
        shp[ax] = -1
        term = (f.astype(np.float32) ** 2).reshape(shp)
        sq = term if sq is None else sq + term
    if sq is None:  # pragma: no cover - shape has at least two axes
        raise ValueError("frequency grid of an empty shape")
    return np.sqrt(sq)


def _lowpass_gain(r: np.ndarray, cutoff: float, window: FrequencyWindow, order: float) -> np.ndarray:
    if window is FrequencyWindow.BUTTERWORTH:
        return 1.0 / (1.0 + (r / np.float32(cutoff)) ** np.float32(2 * order))
    return np.exp(-(r**2) / np.float32(2 * cutoff**2))


def frequency_filter_array(
    array: np.ndarray,
    spacing: Sequence[float],
    low_cutoff: float | None,
    high_cutoff: float | None,
    window: FrequencyWindow | str = "butterworth",
    order: float = 2.0,
) -> np.ndarray:
    """Filter one spatial array in the frequency domain; float32.

    The gain is ``lowpass(high_cutoff) * highpass(low_cutoff)`` where a missing cut-off means
    no limit; ``highpass = 1 - lowpass``. Butterworth gain at the cut-off is 0.5 (the squared
    form, as ``skimage.filters.butterworth``); the Gaussian window is ``exp(-f^2 / (2 fc^2))``.

    Args:
        array: Spatial array (2D or 3D).
        spacing: mm per axis.
        low_cutoff: High-pass cut-off in cycles/mm (frequencies below are removed), or None.
        high_cutoff: Low-pass cut-off in cycles/mm (frequencies above are removed), or None.
        window: ``"butterworth"`` or ``"gaussian"``.
        order: Butterworth order.
    """
    win = _parse_window(window)
    for name, v in (("low_cutoff", low_cutoff), ("high_cutoff", high_cutoff)):
        if v is not None and not v > 0:
            raise ConfigError(f"frequency filter: {name} must be > 0 cycles/mm, got {v}")
    if low_cutoff is not None and high_cutoff is not None and low_cutoff >= high_cutoff:
        raise ConfigError(f"bandpass: low_cutoff ({low_cutoff}) must be below high_cutoff ({high_cutoff}) cycles/mm")
    if order <= 0:
        raise ConfigError(f"frequency filter: order must be > 0, got {order}")
    r = _frequency_radius(array.shape, spacing)
    gain = np.ones_like(r)
    if high_cutoff is not None:
        gain *= _lowpass_gain(r, high_cutoff, win, order)
    if low_cutoff is not None:
        gain *= 1.0 - _lowpass_gain(r, low_cutoff, win, order)
    spec = fft.rfftn(array.astype(np.float32, copy=False), workers=1)
    spec *= gain
    return fft.irfftn(spec, s=array.shape, workers=1).astype(np.float32, copy=False)


def _freq(image: Image, low: float | None, high: float | None, window: str, order: float, what: str) -> Image:
    require_intensity(image, what)
    return per_channel(image, lambda a: frequency_filter_array(a, image.spacing, low, high, window, order))


@register_transform("lowpass", TransformKind.INTENSITY)
def lowpass(image: Image, cutoff: float, window: FrequencyWindow = FrequencyWindow.BUTTERWORTH, order: float = 2.0) -> Image:
    """Frequency-domain low-pass: keeps structure coarser than ``1 / cutoff`` mm.

    Args:
        image: Intensity image.
        cutoff: Cut-off frequency in cycles/mm (gain 0.5 there for Butterworth).
        window: ``"butterworth"`` or ``"gaussian"``.
        order: Butterworth order (steepness).
    """
    return _freq(image, None, cutoff, window, order, "lowpass")


@register_transform("highpass", TransformKind.INTENSITY)
def highpass(image: Image, cutoff: float, window: FrequencyWindow = FrequencyWindow.BUTTERWORTH, order: float = 2.0) -> Image:
    """Frequency-domain high-pass: removes structure coarser than ``1 / cutoff`` mm (and the mean).

    Args:
        image: Intensity image.
        cutoff: Cut-off frequency in cycles/mm.
        window: ``"butterworth"`` or ``"gaussian"``.
        order: Butterworth order.
    """
    return _freq(image, cutoff, None, window, order, "highpass")


@register_transform("bandpass", TransformKind.INTENSITY)
def bandpass(
    image: Image,
    low_cutoff: float,
    high_cutoff: float,
    window: FrequencyWindow = FrequencyWindow.BUTTERWORTH,
    order: float = 2.0,
) -> Image:
    """Frequency-domain band-pass between ``low_cutoff`` and ``high_cutoff`` cycles/mm.

    Args:
        image: Intensity image.
        low_cutoff: Lower edge in cycles/mm.
        high_cutoff: Upper edge in cycles/mm (> low_cutoff).
        window: ``"butterworth"`` or ``"gaussian"``.
        order: Butterworth order.
    """
    return _freq(image, low_cutoff, high_cutoff, window, order, "bandpass")
