"""Threshold annotators: Otsu, multi-level Otsu, fixed intensity range (e.g. HU).

Each takes a single-channel intensity :class:`Image` and returns a label :class:`Image` on the
same grid (uint8). Optional Gaussian pre-smoothing is given in mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

from medannot.classical.progress import Progress, step_of
from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError, InputError
from medannot.io.colour import colour_note

__all__ = ["fixed_threshold", "multiotsu", "otsu"]


def scalar_array(image: Image, what: str, sigma_mm: float = 0.0, progress: Progress | None = None) -> np.ndarray:
    """The single channel as float32, optionally Gaussian-smoothed with ``sigma_mm`` (mm)."""
    if image.channels != 1:
        raise InputError(f"{what} needs a single-channel image, got {image.channels} channels{colour_note(image.channels)}; "
                         "select or average channels first")
    if sigma_mm < 0:
        raise ConfigError(f"{what}: -p sigma_mm must be >= 0 (mm), got {sigma_mm}")
    arr = image.array[0].astype(np.float32, copy=False)
    if sigma_mm > 0:
        step_of(progress)(f"smoothing (sigma {sigma_mm:g} mm)")
        arr = ndi.gaussian_filter(arr, [sigma_mm / s for s in image.spacing], mode="nearest", output=np.float32)
    return arr


def label_image(image: Image, labels: np.ndarray, meta: dict | None = None) -> Image:
    """Wrap a label array (uint8 if it fits, else uint16) on ``image``'s grid."""
    top = int(labels.max()) if labels.size else 0
    if top > np.iinfo(np.uint16).max:
        raise InputError(f"{top} labels do not fit uint16")
    dtype = np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16
    return Image(labels.astype(dtype, copy=False)[None], image.geometry, ImageKind.LABEL, dict(meta or {}))


def otsu(image: Image, sigma_mm: float = 0.0, nbins: int = 256, progress: Progress | None = None) -> Image:
    """Otsu threshold: label 1 for voxels above the threshold, 0 below.

    Args:
        image: Single-channel intensity image.
        sigma_mm: Gaussian pre-smoothing in mm (0 = none).
        nbins: Histogram bins.
        progress: Shows the steps on a terminal.

    Returns:
        uint8 labels {0, 1}; ``meta["threshold"]`` holds the threshold (image units).
        A constant image gives all 0.
    """
    arr = scalar_array(image, "otsu", sigma_mm, progress) if sigma_mm > 0 or image.channels != 1 else image.array[0]
    step_of(progress)("thresholding")
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        return label_image(image, np.zeros(arr.shape, np.uint8), {"threshold": lo})
    t = _otsu_threshold(arr, lo, hi, nbins)
    return label_image(image, (arr > t).astype(np.uint8), {"threshold": t})


def _otsu_threshold(arr: np.ndarray, lo: float, hi: float, nbins: int) -> float:
    """skimage's Otsu threshold of ``arr`` (values ``lo`` to ``hi``) from a float64 histogram counted in blocks: no
    float copy of the image, and no overflow for values near the float32 limit (class variances square intensities).

    Raises:
        InputError: Values that are not finite (the readers refuse them; an image built in memory may hold them).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"otsu: the image holds values that are not finite (from {lo:g} to {hi:g}); replace NaN and infinite values first")
    counts, edges = np.histogram(arr, bins=nbins, range=(lo, hi))
    edges = edges.astype(np.float64)  # a float32 image gives float32 edges: skimage squares the centres (overflow past 1.8e19)
    centers = (edges[:-1] + edges[1:]) / 2.0
    return float(filters.threshold_otsu(hist=(counts, centers)))


def multiotsu(image: Image, classes: int = 3, sigma_mm: float = 0.0, nbins: int = 256, progress: Progress | None = None) -> Image:
    """Multi-level Otsu (skimage ``threshold_multiotsu``) into ``classes`` intensity classes.

    Args:
        image: Single-channel intensity image.
        classes: Number of classes k (2..10).
        sigma_mm: Gaussian pre-smoothing in mm.
        nbins: Histogram bins.
        progress: Shows the steps on a terminal.

    Returns:
        uint8 labels: 0 for the darkest class (background), 1..k-1 for the brighter classes in
        order of intensity; ``meta["thresholds"]`` lists the k-1 thresholds.

    Raises:
        InputError: If the image has fewer distinct values than classes.
    """
    if not 2 <= classes <= 10:
        raise ConfigError(f"multiotsu: -p classes must be 2..10, got {classes}")
    arr = scalar_array(image, "multiotsu", sigma_mm, progress)
    step_of(progress)(f"finding {classes - 1} thresholds")
    try:
        ts = filters.threshold_multiotsu(arr, classes=classes, nbins=nbins)
    except ValueError as exc:
        raise InputError(f"multiotsu: cannot split the image into {classes} classes ({exc}); use fewer classes") from None
    return label_image(image, np.digitize(arr, ts).astype(np.uint8), {"thresholds": [float(t) for t in ts]})


def fixed_threshold(image: Image, lower: float | None = None, upper: float | None = None, sigma_mm: float = 0.0,
                    progress: Progress | None = None) -> Image:
    """Label 1 where ``lower <= value <= upper`` (image units, e.g. HU for CT: bone 300..3000).

    Args:
        image: Single-channel intensity image.
        lower: Inclusive lower bound (None = no bound).
        upper: Inclusive upper bound (None = no bound).
        sigma_mm: Gaussian pre-smoothing in mm.
        progress: Shows the steps on a terminal.

    Returns:
        uint8 labels {0, 1}.
    """
    if lower is None and upper is None:
        raise ConfigError("threshold: give -p lower=... and/or -p upper=... (image units, e.g. HU; see `medannot methods threshold`)")
    if lower is not None and upper is not None and lower > upper:
        raise ConfigError(f"threshold: -p lower ({lower}) must be <= -p upper ({upper})")
    arr = scalar_array(image, "threshold", sigma_mm, progress)
    step_of(progress)("thresholding")
    sel = np.ones(arr.shape, bool)
    if lower is not None:
        sel &= arr >= lower
    if upper is not None:
        sel &= arr <= upper
    return label_image(image, sel.astype(np.uint8), {"lower": lower, "upper": upper})
