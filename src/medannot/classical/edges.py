"""Edges and marker-based watershed on the gradient magnitude.

Canny (skimage ``feature.canny``) exists for 2D only; for 3D, :func:`edges` returns the
thresholded gradient magnitude (Sobel of the Gaussian-smoothed volume) instead, and says so
in ``meta["method"]``. The watershed floods the gradient magnitude (nD, skimage) from markers:
given ones, or automatic ones from the Otsu mask (cores deeper than a distance in mm mark
objects, background far enough outside marks background).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters, segmentation

from medannot.classical.progress import Progress, step_of
from medannot.classical.threshold import label_image, scalar_array
from medannot.data.image import Image
from medannot.errors import ConfigError, InputError
from medannot.postprocess.components import instances

__all__ = ["edges", "gradient_magnitude", "watershed"]


def gradient_magnitude(image: Image, sigma_mm: float = 1.0, progress: Progress | None = None) -> np.ndarray:
    """Sobel gradient magnitude (per voxel, image units per voxel) of the smoothed single channel; float32.

    The Sobel kernels work in voxels; on anisotropic grids the gradient along each axis is
    divided by its spacing first so the magnitude is in image units per mm.
    """
    arr = scalar_array(image, "gradient", sigma_mm, progress)
    step_of(progress)("gradient magnitude")
    sq = np.zeros(arr.shape, np.float32)
    for ax, sp in enumerate(image.spacing):
        g = filters.sobel(arr, axis=ax).astype(np.float32, copy=False) / np.float32(sp)
        sq += g * g
    return np.sqrt(sq, out=sq)


def edges(image: Image, sigma_mm: float = 1.0, low: float | None = None, high: float | None = None) -> Image:
    """Edge map: Canny in 2D; thresholded gradient magnitude in 3D (skimage has no 3D Canny).

    Args:
        image: Single-channel intensity image.
        sigma_mm: Gaussian smoothing in mm (2D Canny needs an isotropic sigma: the mean over axes is used).
        low: Lower hysteresis threshold (2D, image gradient units; None = skimage default).
        high: Upper threshold (2D hysteresis; 3D: edges are gradient > high, default the Otsu
            threshold of the gradient magnitude).

    Returns:
        uint8 labels {0, 1} (1 = edge); ``meta["method"]`` is ``"canny"`` or ``"gradient-magnitude"``.
    """
    if image.ndim == 2:
        arr = scalar_array(image, "edges")
        sigma_vox = sigma_mm / float(np.mean(image.spacing))
        out = feature.canny(arr, sigma=sigma_vox, low_threshold=low, high_threshold=high)
        return label_image(image, out.astype(np.uint8), {"method": "canny"})
    grad = gradient_magnitude(image, sigma_mm)
    t = float(filters.threshold_otsu(grad)) if high is None else float(high)
    return label_image(image, (grad > t).astype(np.uint8), {"method": "gradient-magnitude", "threshold": t})


def watershed(
    image: Image,
    markers: np.ndarray | Image | None = None,
    sigma_mm: float = 1.0,
    instances_out: bool = True,
    compactness: float = 0.0,
    marker_distance_mm: float = 2.0,
    progress: Progress | None = None,
) -> Image:
    """Marker-based watershed of the gradient magnitude (2D or 3D).

    Args:
        image: Single-channel intensity image.
        markers: Integer marker array on the image grid (0 = unlabelled, 1 = background,
            2.. = objects), or None for automatic markers from the Otsu mask: each connected core
            deeper than ``marker_distance_mm`` inside it marks one object, background further than
            ``marker_distance_mm`` outside it marks background; the band between is flooded.
        sigma_mm: Gaussian smoothing in mm before the gradient.
        instances_out: True: one label per object (1..n, uint8/uint16); False: all objects = 1.
        compactness: skimage compact-watershed parameter (0 = classic watershed).
        marker_distance_mm: Depth in mm of the automatic markers (see ``markers``).
        progress: Shows the steps on a terminal.

    Returns:
        Label image: 0 background (the region flooded from marker 1), objects as above.
        An image with no object marker gives all 0.
    """
    step = step_of(progress)
    grad = gradient_magnitude(image, sigma_mm, progress)
    if markers is None:
        if marker_distance_mm <= 0:
            raise ConfigError(f"watershed: -p marker_distance_mm must be > 0 (mm), got {marker_distance_mm}")
        arr = scalar_array(image, "watershed", sigma_mm, progress)
        if arr.min() == arr.max():
            return label_image(image, np.zeros(arr.shape, np.uint8))
        step("Otsu mask and distances for the automatic markers")
        fg = arr > filters.threshold_otsu(arr)
        # distances in mm (float32 output buffers to avoid float64 volumes)
        inner = ndi.distance_transform_edt(fg, sampling=image.spacing).astype(np.float32)
        objs, _ = instances(inner > marker_distance_mm)
        del inner
        outer = ndi.distance_transform_edt(~fg, sampling=image.spacing) > marker_distance_mm
        mk = np.where(objs > 0, objs.astype(np.int32) + 1, 0).astype(np.int32)
        mk[outer] = 1
    else:
        mk = np.asarray(markers.array[0] if isinstance(markers, Image) else markers)
        if mk.shape != image.spatial_shape:
            raise InputError(f"watershed markers shape {mk.shape} differs from the image's {image.spatial_shape}")
        if not np.issubdtype(mk.dtype, np.integer):
            raise InputError(f"watershed markers must be integers (1 = background, 2.. = objects), got {mk.dtype}")
        mk = mk.astype(np.int32)
    if compactness < 0:
        raise ConfigError(f"watershed: -p compactness must be >= 0, got {compactness}")
    if not np.any(mk > 1):
        return label_image(image, np.zeros(image.spatial_shape, np.uint8))
    step(f"flooding from {len(np.unique(mk)) - 1} markers")
    flooded = segmentation.watershed(grad, mk, compactness=compactness)
    out = np.where(flooded > 1, flooded - 1, 0)
    if not instances_out:
        out = (out > 0).astype(np.uint8)
    else:
        _, inv = np.unique(out, return_inverse=True)  # make ids consecutive
        out = inv.reshape(out.shape)
    return label_image(image, out)
