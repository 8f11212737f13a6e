"""Spatial transforms: reorientation, resampling by world coordinates, cropping and padding.

Every function keeps world positions: the geometry of the result says where each new voxel
lies (RAS mm), so a prediction made on the transformed grid goes back onto the source grid
with :func:`resample_to_grid` (``resample_to_grid(pred, source.geometry, source.spatial_shape)``).

Interpolation (``order``): None picks linear (1) for intensity images and nearest (0) for
label maps. Intensity results are float32; label maps keep their dtype. A target voxel whose
centre lies outside the source's field of view (beyond half a voxel past the edge voxel
centres, the ITK convention) gets ``cval``; inside that band edge values are extended.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError, GeometryError
from medannot.transforms.registry import TransformKind, register_transform

__all__ = ["crop_or_pad", "crop_to_foreground", "reorient", "resample_to_grid", "resample_to_spacing", "resampled_argmax"]


@register_transform("reorient", TransformKind.SPATIAL)
def reorient(image: Image, axcodes: str = "RAS") -> Image:
    """Permute and flip array axes so they point along ``axcodes``; world positions unchanged.

    Args:
        image: 2D or 3D image.
        axcodes: One code per spatial axis, each the world direction the axis increases
            towards: R/L, A/P, S/I (e.g. ``"RAS"``, ``"LPS"``; 2D grids use two codes, e.g. ``"RA"``).

    Returns:
        The same voxels (no interpolation, labels stay exact) on the reoriented grid.

    Raises:
        ConfigError: If ``axcodes`` is not one valid code per spatial axis.
    """
    codes = tuple(str(axcodes).upper())
    valid_sets = ({"R", "L"}, {"A", "P"}, {"S", "I"})
    if len(codes) != image.ndim or any(not any(c in s for s in valid_sets) for c in codes):
        raise ConfigError(f"reorient: axcodes must be {image.ndim} letters from R/L, A/P, S/I, got {axcodes!r}")
    used = [next(i for i, s in enumerate(valid_sets) if c in s) for c in codes]
    if len(set(used)) != len(used):
        raise ConfigError(f"reorient: axcodes {axcodes!r} name one world axis twice")
    src = nio.io_orientation(image.affine)
    dst = nio.axcodes2ornt(codes)
    if image.ndim == 2 and max(used) > 1:
        # 2D grids live in the world's x-y plane (R/L, A/P) only.
        raise ConfigError(f"reorient: a 2D grid spans R/L and A/P only, got {axcodes!r}")
    tr = nio.ornt_transform(src, dst)
    if np.array_equal(tr, np.array([[i, 1] for i in range(image.ndim)], dtype=float)):
        return image
    spatial = image.spatial_shape
    new_aff = image.affine @ nio.inv_ornt_aff(tr, spatial)
    arr = np.moveaxis(image.array, 0, -1)
    out = np.ascontiguousarray(np.moveaxis(nio.apply_orientation(arr, tr), -1, 0))
    return Image(out, Geometry.from_affine(new_aff), image.kind, dict(image.meta))


def _default_order(image: Image, order: int | None) -> int:
    if order is None:
        return 0 if image.is_label else 1
    if not 0 <= int(order) <= 5:
        raise ConfigError(f"interpolation order must be 0..5 (0 nearest, 1 linear, 3 cubic), got {order}")
    return int(order)


def _outside_mask(
    matrix: np.ndarray, offset: np.ndarray, src_shape: Sequence[int], out_shape: Sequence[int]
) -> np.ndarray | None:
    """Boolean mask of target voxels whose source index lies outside [-0.5, n-0.5]; None if none do."""
    n = len(out_shape)
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in out_shape], indexing="ij")).reshape(n, -1)
    src = matrix @ corners + offset[:, None]
    lo, hi = -0.5 - 1e-6, np.asarray(src_shape, dtype=float)[:, None] - 0.5 + 1e-6
    if np.all((src >= lo) & (src <= hi)):
        return None  # convex: all corners inside means everything inside
    mask = np.zeros(tuple(out_shape), dtype=bool)
    rest = [np.arange(s, dtype=np.float64) for s in out_shape[1:]]
    for i in range(out_shape[0]):  # slab by slab: 2D temporaries only
        inside = np.ones(tuple(out_shape[1:]), dtype=bool)
        for d in range(n):
            coord = matrix[d, 0] * i + offset[d]
            for ax, r in enumerate(rest):
                shape = [1] * (n - 1)
                shape[ax] = -1
                coord = coord + matrix[d, ax + 1] * r.reshape(shape)
            inside &= (coord >= -0.5 - 1e-6) & (coord <= src_shape[d] - 0.5 + 1e-6)
        mask[i] = ~inside
    return mask


def resample_array(
    array: np.ndarray,
    matrix: np.ndarray,
    offset: np.ndarray,
    out_shape: Sequence[int],
    order: int,
    cval: float = 0.0,
    out_dtype: np.dtype | type | None = None,
) -> np.ndarray:
    """Resample a channel-first array: target index ``t`` reads source index ``matrix @ t + offset``.

    Args:
        array: ``(C, *spatial)`` source.
        matrix: ``ndim x ndim`` index-to-index matrix.
        offset: Index offset (``ndim``).
        out_shape: Target spatial shape (voxels).
        order: Spline order (0 nearest, 1 linear, ...). Order > 1 prefilters to float32 (no float64 copy).
        cval: Value for target voxels outside the source's field of view.
        out_dtype: Output dtype; default float32 (order > 0) or the input dtype (order 0).

    Returns:
        ``(C, *out_shape)`` array.
    """
    out_shape = tuple(int(s) for s in out_shape)
    src = array.view(np.uint8) if array.dtype == bool else array
    if out_dtype is None:
        out_dtype = src.dtype if order == 0 else np.float32
    out = np.empty((array.shape[0], *out_shape), dtype=out_dtype)
    for c in range(array.shape[0]):
        chan = src[c]
        if order > 1:
            chan = ndi.spline_filter(chan, order=order, output=np.float32, mode="nearest")
        ndi.affine_transform(
            chan, matrix, offset=offset, output_shape=out_shape, output=out[c],
            order=order, mode="nearest", prefilter=False,
        )
    mask = _outside_mask(matrix, offset, array.shape[1:], out_shape)
    if mask is not None:
        out[:, mask] = cval
    if array.dtype == bool:
        out = out.astype(bool)
    return out


def resample_to_grid(
    image: Image,
    geometry: Geometry,
    shape: Sequence[int],
    order: int | None = None,
    cval: float = 0.0,
) -> Image:
    """Resample ``image`` onto any target grid by world coordinates (RAS mm).

    This is how predictions made on a preprocessed grid go back onto the input's own grid.

    Args:
        image: Source image (any channels; labels keep their dtype).
        geometry: Target grid geometry (same dimensionality as the image).
        shape: Target spatial shape (voxels).
        order: None = linear for intensity, nearest for labels; otherwise 0..5.
        cval: Value for target voxels outside the source's field of view (0 by default).

    Raises:
        GeometryError: If the dimensionalities or the shape length differ.
    """
    if geometry.ndim != image.ndim or len(shape) != image.ndim:
        raise GeometryError(
            f"cannot resample a {image.ndim}D image onto a {geometry.ndim}D grid of shape {tuple(shape)}; "
            "give a target geometry and shape with the image's dimensionality"
        )
    order = _default_order(image, order)
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise GeometryError(f"target shape must be positive, got {shape}")
    if shape == image.spatial_shape and geometry.isclose(image.geometry):
        out = image.array if (order == 0 or image.array.dtype == np.float32) else image.array.astype(np.float32)
        return Image(out, geometry, image.kind, dict(image.meta))
    matrix, offset = _index_map(image.geometry, geometry)
    out_dtype = None
    if image.is_label and order > 0:
        out_dtype = np.float32
    out = resample_array(image.array, matrix, offset, shape, order, cval, out_dtype)
    if image.is_label and order > 0:
        out = np.rint(out).astype(image.array.dtype)
    return Image(out, geometry, image.kind, dict(image.meta))


def _parse_spacing(spacing_mm: float | Sequence[float | None], image: Image) -> tuple[float, ...]:
    if isinstance(spacing_mm, (int, float)):
        values: list[float | None] = [float(spacing_mm)] * image.ndim
    else:
        values = list(spacing_mm)
    if len(values) != image.ndim:
        raise ConfigError(
            f"resample_to_spacing: spacing_mm needs {image.ndim} values for a {image.ndim}D image, got {spacing_mm!r}"
        )
    out = tuple(float(o) if v is None else float(v) for v, o in zip(values, image.spacing))
    if min(out) <= 0 or not all(np.isfinite(out)):
        raise ConfigError(f"resample_to_spacing: spacing_mm must be positive mm, got {spacing_mm!r}")
    return out


@register_transform("resample_to_spacing", TransformKind.SPATIAL)
def resample_to_spacing(
    image: Image, spacing_mm: float | list[float | None], order: int | None = None
) -> Image:
    """Resample to a new voxel spacing, keeping the direction and the first voxel's centre.

    The new shape is ``round(shape * spacing / spacing_mm)`` (at least 1) along each axis.

    Args:
        image: 2D or 3D image.
        spacing_mm: Target spacing in mm: one number for every axis, or one per axis
            (``None`` keeps that axis' spacing).
        order: None = linear for intensity, nearest for labels.
    """
    spacing = _parse_spacing(spacing_mm, image)
    if np.allclose(spacing, image.spacing, rtol=0, atol=1e-6):
        return image
    old = np.asarray(image.spacing)
    shape = tuple(max(1, int(round(s * o / n))) for s, o, n in zip(image.spatial_shape, old, spacing))
    geom = Geometry(spacing=spacing, origin=image.geometry.origin, direction=image.geometry.direction)
    return resample_to_grid(image, geom, shape, order=order)


def _shifted(image: Image, start: Sequence[int], array: np.ndarray) -> Image:
    origin = image.geometry.index_to_world(np.asarray(start, dtype=float))
    geom = Geometry(spacing=image.spacing, origin=tuple(origin), direction=image.geometry.direction)
    return Image(array, geom, image.kind, dict(image.meta))


@register_transform("crop_or_pad", TransformKind.SPATIAL)
def crop_or_pad(image: Image, shape: list[int | None], value: float = 0.0) -> Image:
    """Centre-crop or pad each axis to ``shape``; world positions of kept voxels unchanged.

    When the size difference is odd, the extra voxel is cropped from / padded at the end.

    Args:
        image: 2D or 3D image.
        shape: Target spatial shape in voxels (``None`` keeps that axis).
        value: Fill value for padding.

    Raises:
        ConfigError: If ``shape`` has the wrong length or non-positive sizes.
    """
    if len(shape) != image.ndim:
        raise ConfigError(f"crop_or_pad: shape needs {image.ndim} values, got {list(shape)}")
    target = [s if t is None else int(t) for s, t in zip(image.spatial_shape, shape)]
    if min(target) < 1:
        raise ConfigError(f"crop_or_pad: shape must be positive voxels, got {list(shape)}")
    if tuple(target) == image.spatial_shape:
        return image
    start = [(s - t) // 2 for s, t in zip(image.spatial_shape, target)]  # negative = pad before
    out = np.full((image.channels, *target), value, dtype=image.array.dtype)
    src_sl, dst_sl = [slice(None)], [slice(None)]
    for s, t, st in zip(image.spatial_shape, target, start):
        a = max(st, 0)
        b = min(st + t, s)
        src_sl.append(slice(a, b))
        dst_sl.append(slice(a - st, b - st))
    out[tuple(dst_sl)] = image.array[tuple(src_sl)]
    return _shifted(image, start, out)


@register_transform("crop_to_foreground", TransformKind.SPATIAL)
def crop_to_foreground(image: Image, threshold: float = 0.0, margin: int = 0) -> Image:
    """Crop to the bounding box of voxels above ``threshold`` in any channel, plus a margin.

    Args:
        image: 2D or 3D image (labels: foreground is any label > threshold).
        threshold: Intensity above which a voxel is foreground.
        margin: Voxels kept around the box on every side (clipped at the image border).

    Returns:
        The cropped image; an image with no foreground is returned unchanged.
    """
    if margin < 0:
        raise ConfigError(f"crop_to_foreground: margin must be >= 0 voxels, got {margin}")
    fg = np.any(image.array > threshold, axis=0)
    if not fg.any():
        return image
    start, stop = [], []
    for ax in range(image.ndim):
        other = tuple(a for a in range(image.ndim) if a != ax)
        idx = np.flatnonzero(np.any(fg, axis=other))
        start.append(max(int(idx[0]) - margin, 0))
        stop.append(min(int(idx[-1]) + 1 + margin, image.spatial_shape[ax]))
    sl = (slice(None), *(slice(a, b) for a, b in zip(start, stop)))
    return _shifted(image, start, np.ascontiguousarray(image.array[sl]))


def _index_map(source: Geometry, target: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Index-to-index ``(matrix, offset)`` from the target grid into the source grid, float noise snapped."""
    n = source.ndim
    m = np.linalg.inv(source.affine) @ target.affine
    matrix, offset = m[:n, :n], m[:n, n]
    # Snap float noise so exact grid relations (permutations, integer shifts) stay exact.
    matrix = np.where(np.abs(matrix - np.round(matrix)) < 1e-9, np.round(matrix), matrix)
    offset = np.where(np.abs(offset - np.round(offset)) < 1e-6, np.round(offset), offset)
    return matrix, offset


ARGMAX_MARGIN = 1e-5
"""A source voxel whose largest probability beats every other by this much decides its neighbours' argmax
(linear interpolation and float32 rounding move values by far less)."""


def resampled_argmax(probs: np.ndarray, source: Geometry, target: Geometry, shape: Sequence[int]) -> np.ndarray:
    """Label map on a target grid: the arg-max over channels of the linearly resampled probabilities.

    Equal, voxel for voxel, to resampling every channel with :func:`resample_to_grid` (``order=1``, outside the
    source's field of view 0) and taking the first channel of largest value, but it interpolates only where the
    answer is in doubt: a target voxel whose interpolation corners (source voxels floor(c) and floor(c) + 1 along
    each axis, as scipy reads them) all have the same arg-max, each ahead of the other channels by :data:`ARGMAX_MARGIN`, takes
    that label (a convex combination keeps the order of channels that are ordered at every corner). The others
    are interpolated with scipy's ``map_coordinates`` at the very coordinates ``affine_transform`` computes. Grids
    that are not axis-aligned to each other (oblique) are resampled channel by channel.

    Args:
        probs: ``(K, *source_shape)`` float32 probabilities (K <= 65536).
        source: Geometry of ``probs``.
        target: Target geometry (same dimensionality).
        shape: Target spatial shape (voxels).

    Returns:
        uint8 labels (uint16 past 256 channels) of ``shape``; zero channels give all 0.
    """
    shape = tuple(int(s) for s in shape)
    k = probs.shape[0]
    dtype = np.uint8 if k <= 256 else np.uint16
    if k == 0:
        return np.zeros(shape, dtype)
    matrix, offset = _index_map(source, target)
    nz = matrix != 0
    if not (np.all(nz.sum(axis=0) == 1) and np.all(nz.sum(axis=1) == 1)) or k == 1:
        return _argmax_by_channel(probs, source, target, shape).astype(dtype, copy=False)
    n = len(shape)
    src_shape = probs.shape[1:]
    top = np.argmax(probs, axis=0).astype(dtype)
    second = np.partition(probs, k - 2, axis=0)[k - 2]
    sure = (probs.max(axis=0) - second) >= ARGMAX_MARGIN
    # scipy's linear interpolation reads source voxels floor(c) and floor(c) + 1 (clamped): a 2-voxel window.
    lo, hi = top.copy(), top.copy()
    for d in range(n):
        nxt = [slice(None)] * n
        nxt[d] = np.r_[1 : src_shape[d], src_shape[d] - 1]
        sure &= sure[tuple(nxt)]
        lo = np.minimum(lo, lo[tuple(nxt)])
        hi = np.maximum(hi, hi[tuple(nxt)])
    sure &= lo == hi
    del lo, hi, second
    # Source index of every target index, axis by axis (one non-zero per row: source axis d reads target axis ax[d]);
    # the coordinate is computed as scipy's affine_transform computes it (product, then the offset).
    ax = [int(np.flatnonzero(nz[d])[0]) for d in range(n)]
    near = [np.clip(np.floor(np.arange(shape[ax[d]]) * matrix[d, ax[d]] + offset[d]), 0, src_shape[d] - 1).astype(np.intp)
            for d in range(n)]
    order = np.argsort(ax)  # target axis a is source axis order[a]
    labels = np.transpose(top[np.ix_(*near)], order)
    doubt = ~np.transpose(sure[np.ix_(*near)], order)
    if doubt.any():
        pts = np.nonzero(doubt)
        coords = np.stack([pts[ax[d]] * matrix[d, ax[d]] + offset[d] for d in range(n)])  # as scipy computes them
        vals = np.empty((k, coords.shape[1]), np.float32)
        for c in range(k):
            ndi.map_coordinates(probs[c], coords, output=vals[c], order=1, mode="nearest", prefilter=False)
        labels[pts] = np.argmax(vals, axis=0)
    outside = _outside_mask(matrix, offset, src_shape, shape)
    if outside is not None:
        labels[outside] = 0
    return labels


def _argmax_by_channel(probs: np.ndarray, source: Geometry, target: Geometry, shape: tuple[int, ...]) -> np.ndarray:
    """Channel by channel resampling with a running maximum (peak memory: one extra channel on the target grid)."""
    best = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for c in range(probs.shape[0]):
        pc = resample_to_grid(Image(probs[c : c + 1], source, ImageKind.INTENSITY), target, shape, order=1).array[0]
        if c == 0:
            best[...] = pc
            continue
        better = pc > best
        labels[better] = c
        best[better] = pc[better]
    return labels
