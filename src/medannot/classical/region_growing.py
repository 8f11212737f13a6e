"""Region growing from a seed: fixed tolerance or confidence-connected (running statistics).

The region is always the connected component, containing the seed, of the voxels whose
intensity passes the criterion (scipy/cc3d labelling, not a voxel-by-voxel queue), which equals
``skimage.segmentation.flood`` for the tolerance criterion. The k-standard-deviation criterion
re-estimates the region's mean and standard deviation and regrows, for a few iterations (as
ITK's ConfidenceConnected). A size cap keeps the voxels geodesically nearest the seed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import cc3d
import numpy as np
from scipy import ndimage as ndi

from medannot.classical.progress import Progress, step_of
from medannot.classical.threshold import label_image, scalar_array
from medannot.data.image import Image
from medannot.errors import ConfigError, InputError
from medannot.postprocess.components import _connectivity

__all__ = ["SeedSpace", "region_grow"]


class SeedSpace(enum.StrEnum):
    """How a seed is given: voxel indices or world RAS mm."""

    VOXEL = "voxel"
    WORLD = "world"


def _seed_index(image: Image, seed: Sequence[float], space: SeedSpace) -> tuple[int, ...]:
    if len(seed) != image.ndim:
        raise InputError(f"region growing: -p seed needs {image.ndim} coordinates (one per axis, e.g. seed={','.join(['10'] * image.ndim)}), got {list(seed)}")
    idx = np.asarray(seed, dtype=float) if space is SeedSpace.VOXEL else image.geometry.world_to_index(np.asarray(seed, dtype=float))
    out = tuple(int(round(float(v))) for v in idx)
    if any(not 0 <= v < s for v, s in zip(out, image.spatial_shape)):
        raise InputError(
            f"region growing: seed {list(seed)} ({space.value}) -> voxel {out} lies outside the image of shape "
            f"{image.spatial_shape}; give a seed inside the image (axis order: `medannot methods region-growing`)"
        )
    return out


def _component(mask: np.ndarray, seed: tuple[int, ...], connectivity: int) -> np.ndarray:
    if not mask[seed]:
        out = np.zeros(mask.shape, bool)
        return out
    lab = cc3d.connected_components(mask, connectivity=connectivity)  # type: ignore[call-overload]  # cc3d's stub wants a Literal
    return lab == lab[seed]


def _cap(region: np.ndarray, seed: tuple[int, ...], max_voxels: int, connectivity: int) -> np.ndarray:
    """Keep the voxels of ``region`` within the largest geodesic distance that fits ``max_voxels``."""
    if region.sum() <= max_voxels:
        return region
    structure = ndi.generate_binary_structure(region.ndim, {4: 1, 6: 1, 8: 2, 18: 2, 26: 3}[connectivity])
    kept = np.zeros(region.shape, bool)
    kept[seed] = True
    while True:
        grown = ndi.binary_dilation(kept, structure, mask=region)
        if grown.sum() > max_voxels or np.array_equal(grown, kept):
            return kept
        kept = grown


def region_grow(
    image: Image,
    seed: Sequence[float],
    seed_space: SeedSpace | str = SeedSpace.VOXEL,
    tolerance: float | None = None,
    k_std: float | None = None,
    iterations: int = 4,
    initial_radius: int = 1,
    connectivity: int | None = None,
    max_size_mm: float | None = None,
    sigma_mm: float = 0.0,
    progress: Progress | None = None,
) -> Image:
    """Grow a region from a seed.

    Exactly one criterion is used:

    - ``tolerance``: voxels with ``|value - seed value| <= tolerance`` (image units).
    - ``k_std``: voxels with ``|value - mean| <= k_std * std`` where mean and std are first
      measured in a cube of ``initial_radius`` voxels around the seed, then over the grown region,
      ``iterations`` times.

    Args:
        image: Single-channel intensity image (2D or 3D).
        seed: Seed position: voxel indices in array order (``seed_space="voxel"``) or world RAS mm (``"world"``);
            see :data:`medannot.classical.params.POINT_AXES` for the axis order of each format.
        seed_space: ``"voxel"`` or ``"world"``.
        tolerance: Intensity tolerance (image units).
        k_std: Multiplier of the standard deviation.
        iterations: Statistic re-estimations for ``k_std``.
        initial_radius: Half-size in voxels of the cube for the first statistics.
        connectivity: 4/8 (2D) or 6/18/26 (3D); None = face connectivity (4 / 6), as skimage's flood default.
        max_size_mm: Size cap in mm^3 (3D) / mm^2 (2D): only the voxels geodesically nearest the seed are kept.
        sigma_mm: Gaussian pre-smoothing in mm (0 = none); criteria then apply to the smoothed values.
        progress: Shows the steps on a terminal.

    Returns:
        uint8 labels {0, 1}; ``meta`` holds the final ``lower``/``upper`` bounds and ``seed_voxel``.
    """
    space = SeedSpace(seed_space) if seed_space in {s.value for s in SeedSpace} else None
    if space is None:
        raise ConfigError(f"region growing: -p seed_space must be voxel or world, got {seed_space!r}")
    if (tolerance is None) == (k_std is None):
        raise ConfigError("region growing: give exactly one of -p tolerance=... (image units) or -p k_std=... (see `medannot methods region-growing`)")
    if (tolerance is not None and tolerance < 0) or (k_std is not None and k_std <= 0):
        raise ConfigError("region growing: -p tolerance must be >= 0 and -p k_std > 0")
    step = step_of(progress)
    arr = scalar_array(image, "region growing", sigma_mm, progress)
    seed_idx = _seed_index(image, seed, space)
    conn = _connectivity(image.ndim, connectivity) if connectivity is not None else (4 if image.ndim == 2 else 6)
    value = float(arr[seed_idx])
    if tolerance is not None:
        lo, hi = value - tolerance, value + tolerance
        step("growing")
        region = _component((arr >= lo) & (arr <= hi), seed_idx, conn)
    else:
        k = float(k_std) if k_std is not None else 0.0  # exactly one criterion was given (checked above)
        box = tuple(slice(max(i - initial_radius, 0), i + initial_radius + 1) for i in seed_idx)
        vals = arr[box]
        region = np.zeros(arr.shape, bool)
        for i in range(max(1, iterations)):
            step(f"growing, iteration {i + 1} of {max(1, iterations)}")
            mean, std = float(vals.mean(dtype=np.float64)), float(vals.std(dtype=np.float64))
            lo, hi = mean - k * std, mean + k * std
            if not lo <= value <= hi:  # keep the seed inside the interval
                lo, hi = min(lo, value), max(hi, value)
            new = _component((arr >= lo) & (arr <= hi), seed_idx, conn)
            if np.array_equal(new, region):
                break
            region = new
            vals = arr[region]
    if max_size_mm is not None:
        if max_size_mm <= 0:
            raise ConfigError(f"region growing: -p max_size_mm must be > 0, got {max_size_mm}")
        step("size cap")
        region = _cap(region, seed_idx, max(1, int(max_size_mm / image.geometry.voxel_volume)), conn)
    return label_image(image, region.astype(np.uint8), {"lower": lo, "upper": hi, "seed_voxel": list(seed_idx)})
