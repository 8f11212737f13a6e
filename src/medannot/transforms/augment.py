"""Random augmentation: each ``rand_*`` transform draws its parameters, then calls a fixed one.

Spatial augmentations change the content on the *same grid* (geometry unchanged) and apply the
identical change to a label map passed along (nearest neighbour for labels), so image and
labels stay aligned. Rotations, scalings and elastic displacements are defined in world mm
about the grid centre, so anisotropic voxels are handled. Every random transform takes
``rng: numpy.random.Generator`` (same seed, same result) and ``p``, the probability of applying.

Fixed transforms: :func:`flip`, :func:`affine`, :func:`elastic`, :func:`bias_field`,
intensity gamma (:func:`medannot.transforms.enhance.gamma_array`). Use :func:`augment` to run a
list of specs on an (image, label) pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medannot.data.image import Image
from medannot.errors import ConfigError, GeometryError
from medannot.transforms.enhance import gamma_array
from medannot.transforms.intensity import require_intensity
from medannot.transforms.registry import Compose, TransformKind, register_transform
from medannot.transforms.spatial import resample_array

__all__ = [
    "affine",
    "augment",
    "bias_field",
    "elastic",
    "flip",
    "rand_affine",
    "rand_bias_field",
    "rand_elastic",
    "rand_flip",
    "rand_gamma",
    "rand_noise",
    "rand_scale_intensity",
]

Pair = tuple[Image, Image | None]


def _check_pair(image: Image, label: Image | None) -> None:
    if label is not None and not label.same_grid(image):
        raise GeometryError(
            f"augmentation needs the label on the image grid: shape {label.spatial_shape} vs {image.spatial_shape}; "
            "resample the label onto the image first"
        )


def _range(value: float | Sequence[float], name: str, symmetric: bool = True) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        return (-float(value), float(value)) if symmetric else (float(value), float(value))
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ConfigError(f"{name}: range must be (low, high) with low <= high, got {value!r}")
    return lo, hi


# ---------------------------------------------------------------- fixed spatial transforms


def flip(image: Image, axes: Sequence[int]) -> Image:
    """Flip the content along spatial ``axes`` (0-based) on the same grid."""
    if any(not 0 <= a < image.ndim for a in axes):
        raise ConfigError(f"flip: axes must be in 0..{image.ndim - 1}, got {list(axes)}")
    if not axes:
        return image
    out = np.ascontiguousarray(np.flip(image.array, axis=tuple(a + 1 for a in axes)))
    return image.with_array(out)


def _world_rotation(angles_deg: Sequence[float], ndim: int) -> np.ndarray:
    if ndim == 2:
        (t,) = np.deg2rad(angles_deg)
        return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    rot = np.eye(3)
    for axis, a in enumerate(np.deg2rad(angles_deg)):
        c, s = np.cos(a), np.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rot = r @ rot
    return rot


def affine(image: Image, rotation_deg: Sequence[float], scale: Sequence[float], order: int | None = None) -> Image:
    """Rotate (degrees, about the world axes) and scale the content about the grid centre, same grid.

    Args:
        image: Image or label map (labels: nearest neighbour; out-of-field 0).
        rotation_deg: One angle (2D) or three angles about x, y, z (3D), degrees.
        scale: One factor per axis (> 1 enlarges the content).
        order: Interpolation order; None = linear for intensity, nearest for labels.

    Out-of-field voxels take each channel's minimum (intensity) or 0 (labels).
    """
    n = image.ndim
    if len(rotation_deg) != (1 if n == 2 else 3) or len(scale) != n or min(scale) <= 0:
        raise ConfigError(f"affine: need {1 if n == 2 else 3} angles and {n} positive scales, got {rotation_deg}, {scale}")
    lin = np.asarray(image.affine[:n, :n])
    centre = (np.asarray(image.spatial_shape) - 1) / 2.0
    fwd = _world_rotation(rotation_deg, n) @ np.diag(scale)  # world-space map of the content
    # output index t -> world -> inverse content map -> source index
    matrix = np.linalg.inv(lin) @ np.linalg.inv(fwd) @ lin
    offset = centre - matrix @ centre
    order = (0 if image.is_label else 1) if order is None else int(order)
    out = np.empty(image.array.shape, dtype=image.array.dtype if order == 0 else np.float32)
    for c in range(image.channels):
        cval = 0.0 if image.is_label else float(image.array[c].min())
        out[c] = resample_array(image.array[c : c + 1], matrix, offset, image.spatial_shape, order, cval, out.dtype)[0]
    return image.with_array(out)


def _displacement(
    shape: Sequence[int], spacing: Sequence[float], control_mm: float, magnitude_mm: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Smooth random displacement (voxels, float32, one array per axis) from a coarse control grid."""
    ctrl = [max(2, int(np.ceil(s * sp / control_mm)) + 1) for s, sp in zip(shape, spacing)]
    out = []
    for sp in spacing:
        coarse = rng.normal(0.0, magnitude_mm, size=ctrl).astype(np.float32) / np.float32(sp)
        zoom = [s / c for s, c in zip(shape, ctrl)]
        field = ndi.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True, output=np.float32)
        out.append(field[tuple(slice(0, s) for s in shape)])
    return out


def elastic(image: Image, displacement: Sequence[np.ndarray], order: int | None = None) -> Image:
    """Warp the content by a displacement field (voxels per axis): out[x] = in[x + d(x)]."""
    order = (0 if image.is_label else 1) if order is None else int(order)
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in image.spatial_shape], indexing="ij", sparse=True)
    coords = np.stack([g + d for g, d in zip(grid, displacement)])
    src = image.array.view(np.uint8) if image.array.dtype == bool else image.array
    out = np.empty(src.shape, dtype=src.dtype if order == 0 else np.float32)
    for c in range(image.channels):
        ndi.map_coordinates(src[c], coords, output=out[c], order=order, mode="nearest")
    return image.with_array(out.astype(bool) if image.array.dtype == bool else out)


def bias_field(image: Image, coefficients: Sequence[float], order: int) -> Image:
    """Multiply by ``exp(polynomial)`` of normalised coordinates (-1..1), a smooth MR-like bias field."""
    require_intensity(image, "bias_field")
    axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in image.spatial_shape]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    field = np.zeros(image.spatial_shape, np.float32)
    terms = _poly_terms(image.ndim, order)
    if len(coefficients) != len(terms):
        raise ConfigError(f"bias_field: need {len(terms)} coefficients for order {order}, got {len(coefficients)}")
    for coef, powers in zip(coefficients, terms):
        term: np.ndarray | np.floating = np.float32(coef)
        for g, p in zip(grids, powers):
            term = term * g**p
        field += term
    return image.with_array(image.array.astype(np.float32) * np.exp(field)[None])


def _poly_terms(ndim: int, order: int) -> list[tuple[int, ...]]:
    import itertools

    return [p for p in itertools.product(range(order + 1), repeat=ndim) if 0 < sum(p) <= order]


# ---------------------------------------------------------------- random transforms


def _apply(rng: np.random.Generator, p: float) -> bool:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"probability p must be in 0..1, got {p}")
    return bool(rng.random() < p)


@register_transform("rand_flip", TransformKind.SPATIAL, random=True)
def rand_flip(
    image: Image, label: Image | None = None, *, rng: np.random.Generator, axes: list[int] | None = None, p: float = 0.5
) -> Pair:
    """Flip along each of ``axes`` (default: all spatial axes) independently with probability ``p``."""
    _check_pair(image, label)
    chosen = [a for a in (range(image.ndim) if axes is None else axes) if rng.random() < p]
    return flip(image, chosen), (None if label is None else flip(label, chosen))


@register_transform("rand_affine", TransformKind.SPATIAL, random=True)
def rand_affine(
    image: Image,
    label: Image | None = None,
    *,
    rng: np.random.Generator,
    degrees: float | list[float] = 10.0,
    scale: float | list[float] = 0.1,
    isotropic: bool = True,
    p: float = 1.0,
) -> Pair:
    """Random rotation (uniform in ±``degrees``, or a (low, high) range) and scale (1 ± ``scale``).

    In 3D the angle is drawn for each of the three world axes; ``isotropic`` uses one scale for all axes.
    """
    _check_pair(image, label)
    if not _apply(rng, p):
        return image, label
    lo, hi = _range(degrees, "rand_affine degrees")
    angles = rng.uniform(lo, hi, size=1 if image.ndim == 2 else 3)
    slo, shi = _range(scale, "rand_affine scale")
    s = rng.uniform(1 + slo, 1 + shi, size=1 if isotropic else image.ndim)
    s = np.repeat(s, image.ndim) if isotropic else s
    out = affine(image, angles.tolist(), s.tolist())
    return out, (None if label is None else affine(label, angles.tolist(), s.tolist()))


@register_transform("rand_elastic", TransformKind.SPATIAL, random=True)
def rand_elastic(
    image: Image,
    label: Image | None = None,
    *,
    rng: np.random.Generator,
    control_spacing_mm: float = 20.0,
    magnitude_mm: float = 2.0,
    p: float = 1.0,
) -> Pair:
    """Elastic warp: Gaussian random displacements (std ``magnitude_mm``) on a control grid every
    ``control_spacing_mm``, cubic-interpolated to every voxel."""
    _check_pair(image, label)
    if control_spacing_mm <= 0 or magnitude_mm < 0:
        raise ConfigError("rand_elastic: control_spacing_mm must be > 0 and magnitude_mm >= 0")
    if not _apply(rng, p):
        return image, label
    disp = _displacement(image.spatial_shape, image.spacing, control_spacing_mm, magnitude_mm, rng)
    return elastic(image, disp), (None if label is None else elastic(label, disp))


@register_transform("rand_gamma", TransformKind.INTENSITY, random=True)
def rand_gamma(
    image: Image, label: Image | None = None, *, rng: np.random.Generator, log_gamma: float | list[float] = 0.3, p: float = 1.0
) -> Pair:
    """Gamma with ``exp(uniform(±log_gamma))`` within each channel's range (TorchIO RandomGamma habit)."""
    require_intensity(image, "rand_gamma")
    if not _apply(rng, p):
        return image, label
    lo, hi = _range(log_gamma, "rand_gamma log_gamma")
    g = float(np.exp(rng.uniform(lo, hi)))
    out = np.stack([gamma_array(image.array[c], g) for c in range(image.channels)])
    return image.with_array(out), label


@register_transform("rand_scale_intensity", TransformKind.INTENSITY, random=True)
def rand_scale_intensity(
    image: Image,
    label: Image | None = None,
    *,
    rng: np.random.Generator,
    scale: float | list[float] = 0.1,
    shift: float | list[float] = 0.1,
    p: float = 1.0,
) -> Pair:
    """``x * (1 + s) + t * std(x)`` per channel, ``s`` uniform in ±``scale`` and ``t`` in ±``shift``."""
    require_intensity(image, "rand_scale_intensity")
    if not _apply(rng, p):
        return image, label
    s_lo, s_hi = _range(scale, "scale")
    t_lo, t_hi = _range(shift, "shift")
    out = image.array.astype(np.float32)
    for c in range(image.channels):
        std = float(out[c].std())
        out[c] = out[c] * np.float32(1 + rng.uniform(s_lo, s_hi)) + np.float32(rng.uniform(t_lo, t_hi) * std)
    return image.with_array(out), label


@register_transform("rand_bias_field", TransformKind.INTENSITY, random=True)
def rand_bias_field(
    image: Image, label: Image | None = None, *, rng: np.random.Generator, coefficients: float = 0.5, order: int = 3, p: float = 1.0
) -> Pair:
    """Multiplicative smooth bias field ``exp(poly)``, polynomial coefficients uniform in ±``coefficients``."""
    require_intensity(image, "rand_bias_field")
    if order < 1:
        raise ConfigError(f"rand_bias_field: order must be >= 1, got {order}")
    if not _apply(rng, p):
        return image, label
    n = len(_poly_terms(image.ndim, order))
    return bias_field(image, rng.uniform(-coefficients, coefficients, size=n).tolist(), order), label


@register_transform("rand_noise", TransformKind.INTENSITY, random=True)
def rand_noise(
    image: Image, label: Image | None = None, *, rng: np.random.Generator, std: float | list[float] = 0.1, relative: bool = True, p: float = 1.0
) -> Pair:
    """Additive Gaussian noise; its standard deviation is drawn uniform in 0..``std`` (or a range).

    With ``relative`` the standard deviation is a fraction of each channel's own standard deviation;
    otherwise it is in image units.
    """
    require_intensity(image, "rand_noise")
    if not _apply(rng, p):
        return image, label
    lo, hi = _range(std, "rand_noise std", symmetric=False)
    lo = 0.0 if isinstance(std, (int, float)) else lo
    out = image.array.astype(np.float32)
    for c in range(image.channels):
        sigma = rng.uniform(lo, hi) * (float(out[c].std()) if relative else 1.0)
        out[c] += rng.normal(0.0, sigma, size=out[c].shape).astype(np.float32)
    return image.with_array(out), label


def augment(
    image: Image,
    label: Image | None = None,
    *,
    rng: np.random.Generator,
    specs: Sequence[Mapping[str, Any]],
) -> Pair:
    """Apply transform specs (``rand_*`` or fixed ones) to an image and its label map.

    Args:
        image: Intensity image.
        label: Label map on the same grid, or None.
        rng: Random generator (same seed -> same result).
        specs: ``[{"name": "rand_flip", "params": {"axes": [0]}}, ...]``.

    Returns:
        ``(image, label)``; spatial steps move both identically, intensity steps only the image.
    """
    _check_pair(image, label)
    return Compose(specs).apply_pair(image, label, rng)
