"""The region of interest (ROI) that interactive engines work in, and the seeds they get from prompts.

Every engine segments a crop around the prompts, never the whole image, so the cost of one interaction
depends on the object's size and not on the volume's. The crop starts as the bounding box of every prompt
(points, boxes, scribbles, previous mask) plus a margin; when the mask reaches a side of the crop that is
not the image's edge, that side moves out by the crop's size along that axis and the engine runs again
(at most ``max_grow`` times). A crop larger than ``max_voxels`` is worked on at a coarser, integer-factor
grid (block means) and the mask is brought back to full resolution by nearest neighbour, so memory stays
bounded whatever the prompts.

Seeds in a crop (``int8``: 1 object, 2 background, 0 unknown): positive clicks (a ball of ``seed_radius``
voxels, clipped to the crop) and positive scribbles are 1; negative clicks and scribbles are 2; for a box,
the voxels outside it are 2 (for a box flat along one axis of a volume, only on its slice) and, when no
positive click or scribble lies in it, a ball at its centre (radius 15 % of its smallest side) is 1. For engines that need background seeds (random walker, GrowCut) the
crop's sides that lie inside the image are 2 where they do not look like the object (farther than 2.5
standard deviations from the mean around the object seeds), so an object cut by the crop reaches the side
and the crop grows instead of meeting a background seed half way. A crop that is the whole image treats the image's
edges the same way (background where they do not look like the object, negative prompts or not: one negative click
is no background for a whole volume), and gets all its edges as background when that leaves no background seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from medannot.data.prompts import VoxelPrompts

__all__ = ["Crop", "box_limit", "crop_seeds", "downscale", "downscale_factor", "grow_crop", "initial_crop", "upscale"]

OBJECT, BACKGROUND = 1, 2


@dataclass(frozen=True)
class Crop:
    """An inclusive-exclusive voxel box ``[lo, hi)`` of an image of spatial shape ``shape``."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        """Index of the crop in the full array."""
        return tuple(slice(a, b) for a, b in zip(self.lo, self.hi))

    @property
    def size(self) -> tuple[int, ...]:
        """Voxels per axis."""
        return tuple(b - a for a, b in zip(self.lo, self.hi))

    @property
    def voxels(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.size))

    def inner_faces(self) -> list[tuple[int, int]]:
        """``(axis, side)`` of the crop's sides that lie inside the image (side 0 = low, 1 = high)."""
        out = []
        for ax, (a, b, n) in enumerate(zip(self.lo, self.hi, self.shape)):
            if a > 0:
                out.append((ax, 0))
            if b < n:
                out.append((ax, 1))
        return out


def initial_crop(vp: VoxelPrompts, margin: int, box_margin: int = 3) -> Crop:
    """Bounding box of every prompt plus ``margin`` voxels (``box_margin`` when boxes alone bound the object).

    A box flat along one axis of a volume gets, along that axis, half its mean in-plane size as margin.
    """
    lo, hi = vp.extent()
    size = hi - lo + 1
    pad = np.full(vp.ndim, margin, dtype=np.int64)
    only_boxes = len(vp.boxes) and not len(vp.points) and not len(vp.scribble_voxels) and vp.previous is None
    if only_boxes:
        pad[:] = box_margin
        if vp.ndim == 3:
            flat = size == 1
            if flat.any() and not flat.all():
                pad[flat] = max(box_margin, int(size[~flat].mean() // 2))
    shape = np.asarray(vp.shape)
    a = np.clip(lo - pad, 0, shape)
    b = np.clip(hi + 1 + pad, 0, shape)
    return Crop(tuple(int(v) for v in a), tuple(int(v) for v in b), vp.shape)


def grow_crop(crop: Crop, mask: np.ndarray, touch: int = 1) -> Crop | None:
    """The crop moved out where ``mask`` (crop-shaped) comes within ``touch`` voxels of an inner side; None if it does not."""
    lo, hi = list(crop.lo), list(crop.hi)
    moved = False
    for ax, side in crop.inner_faces():
        n = mask.shape[ax]
        band = [slice(None)] * mask.ndim
        band[ax] = slice(0, min(touch, n)) if side == 0 else slice(max(n - touch, 0), n)
        if mask[tuple(band)].any():
            step = crop.hi[ax] - crop.lo[ax]
            if side == 0:
                lo[ax] = max(0, lo[ax] - step)
            else:
                hi[ax] = min(crop.shape[ax], hi[ax] + step)
            moved = True
    return Crop(tuple(lo), tuple(hi), crop.shape) if moved else None


def downscale_factor(crop: Crop, max_voxels: int) -> int:
    """Smallest integer factor ``f`` with ``prod(ceil(size / f)) <= max_voxels``."""
    f = 1
    while np.prod([-(-s // f) for s in crop.size]) > max_voxels:
        f += 1
    return f


def _ball(radius: int, ndim: int) -> np.ndarray:
    r = max(0, int(radius))
    grid = np.indices((2 * r + 1,) * ndim) - r
    return (grid**2).sum(axis=0) <= r * r


def _stamp(seeds: np.ndarray, centres: np.ndarray, value: int, radius: int) -> None:
    ball = _ball(radius, seeds.ndim)
    offsets = np.argwhere(ball) - radius
    for c in centres:
        pts = c[None, :] + offsets
        keep = np.all((pts >= 0) & (pts < np.asarray(seeds.shape)), axis=1)
        seeds[tuple(pts[keep].T)] = value


def crop_seeds(vp: VoxelPrompts, crop: Crop, factor: int = 1, seed_radius: int = 1, border: bool = True,
               values: np.ndarray | None = None, border_k: float = 2.5) -> np.ndarray:
    """Seed map (``int8``: 0 unknown, 1 object, 2 background) of a crop, on its grid downscaled by ``factor``.

    Args:
        vp: Resolved prompts.
        crop: The crop.
        factor: Integer downscaling factor of the crop's grid (1 = full resolution).
        seed_radius: Radius in (downscaled) voxels of the ball stamped at each click.
        border: Mark the crop's inner sides as background (engines that need background seeds).
        values: The crop's (downscaled) intensities; when given, side voxels within ``border_k`` standard
            deviations of the object seeds' mean stay unknown, so an object cut by the crop can reach its side
            (and the crop grows) instead of meeting a background seed half way.
        border_k: See ``values``.
    """
    lo = np.asarray(crop.lo)
    shape = tuple(-(-s // factor) for s in crop.size)
    seeds = np.zeros(shape, np.int8)

    def local(pts: np.ndarray) -> np.ndarray:
        loc = (np.asarray(pts, np.int64).reshape(-1, vp.ndim) - lo) // factor
        keep = np.all((loc >= 0) & (loc < np.asarray(shape)), axis=1)
        return loc[keep]

    for b in vp.boxes:
        blo, bhi = (b[0] - lo) // factor, (b[1] - lo) // factor
        inside = np.zeros(shape, bool)
        flat = (b[1] == b[0]) if vp.ndim == 3 and np.sum(b[1] == b[0]) == 1 else np.zeros(vp.ndim, bool)
        box = tuple(slice(max(int(a), 0), max(int(c) + 1, 0)) for a, c in zip(blo, bhi))
        inside[box] = True
        if flat.any():  # box on one slice: constrain that slice only
            ax = int(np.argmax(flat))
            plane: list[slice | int] = [slice(None)] * vp.ndim
            plane[ax] = int(np.clip(blo[ax], 0, shape[ax] - 1))
            seeds[tuple(plane)][~inside[tuple(plane)]] = BACKGROUND
        else:
            seeds[~inside] = BACKGROUND
    pts = vp.points
    _stamp(seeds, local(pts[~vp.point_positive]), BACKGROUND, seed_radius)
    neg = local(vp.scribble_voxels[~vp.scribble_positive])
    seeds[tuple(neg.T)] = BACKGROUND
    positive = vp.seeds(True)
    for b in vp.boxes:  # a box with no positive prompt inside: a ball at its centre, 15 % of its smallest side
        inside = np.all((positive >= b[0]) & (positive <= b[1]), axis=1) if len(positive) else np.zeros(0, bool)
        if not inside.any():
            sides = (b[1] - b[0] + 1)[(b[1] - b[0]) > 0]
            radius = max(seed_radius, int(0.15 * float(sides.min()) / factor)) if len(sides) else seed_radius
            _stamp(seeds, local(((b[0] + b[1]) // 2)[None]), OBJECT, radius)
    _stamp(seeds, local(pts[vp.point_positive]), OBJECT, seed_radius)
    pos = local(vp.scribble_voxels[vp.scribble_positive])
    seeds[tuple(pos.T)] = OBJECT
    if border:
        inner = crop.inner_faces()
        faces = inner or [(ax, side) for ax in range(len(shape)) for side in (0, 1)]  # the whole image: its edges
        sides = np.zeros(shape, bool)
        for ax, side in faces:
            idx: list[slice | int] = [slice(None)] * len(shape)
            idx[ax] = 0 if side == 0 else shape[ax] - 1
            sides[tuple(idx)] = True
        unlike = sides
        if values is not None and (seeds == OBJECT).any():
            ref = values[ndi.binary_dilation(seeds == OBJECT, iterations=2)]
            mean, std = float(ref.mean()), max(float(ref.std()), 0.05)
            unlike = sides & (np.abs(values - mean) > border_k * std)
        seeds[unlike & (seeds == 0)] = BACKGROUND
        if not inner and not (seeds == BACKGROUND).any():  # the whole image, edges like the object: all of them
            seeds[sides & (seeds == 0)] = BACKGROUND
    return seeds


def box_limit(vp: VoxelPrompts, crop: Crop) -> np.ndarray | None:
    """Crop-shaped bool map of where the object may lie given the boxes (None without boxes).

    A full box allows its inside; a box flat along one axis of a volume forbids only the rest of its slice.
    """
    if not len(vp.boxes):
        return None
    lo = np.asarray(crop.lo)
    allowed = np.zeros(crop.size, bool)
    for b in vp.boxes:
        box = [slice(max(int(a), 0), max(int(c) + 1, 0)) for a, c in zip(b[0] - lo, b[1] - lo)]
        flat = np.flatnonzero(b[1] == b[0]) if vp.ndim == 3 and np.sum(b[1] == b[0]) == 1 else np.zeros(0, int)
        if len(flat):
            ax = int(flat[0])
            here = np.ones(crop.size, bool)
            plane = [slice(None)] * vp.ndim
            plane[ax] = slice(box[ax].start, box[ax].stop)
            here[tuple(plane)] = False
            here[tuple(box)] = True
        else:
            here = np.zeros(crop.size, bool)
            here[tuple(box)] = True
        allowed |= here
    return allowed


def upscale(mask: np.ndarray, factor: int, size: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour upscaling of a downscaled crop mask back to ``size``."""
    if factor == 1:
        return mask
    out = mask
    for ax in range(mask.ndim):
        out = np.repeat(out, factor, axis=ax)
    return out[tuple(slice(0, s) for s in size)]


def downscale(arr: np.ndarray, factor: int) -> np.ndarray:
    """Block means by an integer ``factor`` (edge blocks padded by reflection)."""
    if factor == 1:
        return arr
    pad = [(0, (-s) % factor) for s in arr.shape]
    a = np.pad(arr, pad, mode="edge")
    shape = []
    for s in a.shape:
        shape += [s // factor, factor]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * arr.ndim, 2)), dtype=np.float32)
