"""Training examples for the promptable network: (image crop, prompt maps, previous mask) -> target mask.

One example is a fixed-size crop (e.g. 96 x 96 or 64 x 64 x 64 voxels) resampled from a field of view
(FOV) around an object (:class:`~medannot.training.promptable_sources.ObjectCase`, real or synthetic),
with isotropic crop voxels in mm. The object's extent is 15 % to 130 % of the FOV's side (log-uniform), so
the network sees small objects, objects that fill the crop and objects cut by its border (the case where
inference widens its FOV). The FOV is centred between the object's centre and its first click, jittered.

Prompting is simulated in the crop with the clicker of :mod:`medannot.evaluation.interactive`:

- ``first`` (p = 0.3): the first click only (the object's point farthest from its boundary);
- ``box`` (p = 0.2): a box from the object's extent, each side jittered by up to 8 % of its size;
- ``refine`` (p = 0.5): a previous mask made by corrupting the truth (dilated or eroded, shifted, with
  random blobs added or cut, or only the part near the first click), then 1..``max_clicks`` rounds of
  "click at the centre of the largest error, then fix part of that error" (what a network does with a
  click); the input is every click so far and the mask *before* the last click was used, as at inference.

Input channels (float32): ``image`` (crop normalised so its 1st..99th percentiles are 0..1), ``positive``
and ``negative`` click maps (balls of ``disc_radius`` crop voxels), ``box`` (1 inside the box) and
``previous`` (the previous mask). Target: the object's mask in the crop (0/1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from medannot.errors import ConfigError
from medannot.evaluation.interactive import Click, box_from_mask, first_click, next_click

__all__ = ["CHANNELS", "ExampleSpec", "PromptableExample", "encode_prompts", "make_example", "resample_crop"]

CHANNELS = ("image", "positive", "negative", "box", "previous")


@dataclass(frozen=True)
class ExampleSpec:
    """How examples are drawn.

    Args:
        crop: Crop shape in voxels (2 or 3 values).
        disc_radius: Radius of a click's ball in crop voxels.
        p_first: Probability of a first-click example.
        p_box: Probability of a box example.
        max_clicks: Most clicks of a refine example.
        rel_size: Range of the object's extent relative to the FOV side.
    """

    crop: tuple[int, ...] = (96, 96)
    disc_radius: int = 2
    p_first: float = 0.3
    p_box: float = 0.2
    max_clicks: int = 8
    rel_size: tuple[float, float] = (0.15, 1.3)

    def __post_init__(self) -> None:
        if len(self.crop) not in (2, 3) or min(self.crop) < 8:
            raise ConfigError(f"crop must have 2 or 3 sides >= 8 voxels, got {self.crop}")
        if not 0 <= self.p_first + self.p_box <= 1:
            raise ConfigError("p_first + p_box must lie in [0, 1]")

    @property
    def ndim(self) -> int:
        """Spatial dimensions."""
        return len(self.crop)


@dataclass(frozen=True, eq=False)
class PromptableExample:
    """``inputs`` (len(CHANNELS), *crop) and ``target`` (1, *crop), float32; ``mode`` and ``clicks`` for inspection."""

    inputs: np.ndarray
    target: np.ndarray
    mode: str
    clicks: tuple[Click, ...]


def resample_crop(array: np.ndarray, centre: Sequence[float], step: Sequence[float], shape: Sequence[int],
                  order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``array`` on an axis-aligned grid: crop voxel ``c`` is at source index ``centre + (c - (n-1)/2) * step``."""
    step = np.asarray(step, float)
    offset = np.asarray(centre, float) - (np.asarray(shape, float) - 1) / 2 * step
    return ndi.affine_transform(np.asarray(array, np.float32), step, offset=offset, output_shape=tuple(shape), order=order,
                                mode="constant", cval=cval, prefilter=False)


def _ball_map(shape: tuple[int, ...], centres: Sequence[Sequence[int]], radius: int) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    if not len(centres):
        return out
    r = radius
    grid = np.indices((2 * r + 1,) * len(shape)) - r
    offs = np.argwhere((grid**2).sum(axis=0) <= r * r) - r
    for c in centres:
        pts = np.asarray(c)[None] + offs
        keep = np.all((pts >= 0) & (pts < np.asarray(shape)), axis=1)
        out[tuple(pts[keep].T)] = 1.0
    return out


def encode_prompts(image: np.ndarray, clicks: Sequence[Click], boxes: Sequence[tuple[Sequence[int], Sequence[int]]],
                   previous: np.ndarray | None, disc_radius: int) -> np.ndarray:
    """Stack the network input (:data:`CHANNELS`) of one crop.

    Args:
        image: Crop intensities (raw units; normalised here).
        clicks: Clicks in crop voxel indices.
        boxes: Inclusive ``(lo, hi)`` crop voxel corners.
        previous: Previous mask in the crop (bool) or None.
        disc_radius: Ball radius of a click (crop voxels).
    """
    shape = image.shape
    lo, hi = np.percentile(image, [1.0, 99.0])
    img = np.clip((image - lo) / max(float(hi - lo), 1e-6), -0.5, 1.5).astype(np.float32)
    pos = _ball_map(shape, [c.index for c in clicks if c.positive], disc_radius)
    neg = _ball_map(shape, [c.index for c in clicks if not c.positive], disc_radius)
    box = np.zeros(shape, np.float32)
    for b_lo, b_hi in boxes:
        box[tuple(slice(max(int(a), 0), max(int(b) + 1, 0)) for a, b in zip(b_lo, b_hi))] = 1.0
    prev = np.zeros(shape, np.float32) if previous is None else previous.astype(np.float32)
    return np.stack([img, pos, neg, box, prev])


def _corrupt(t: np.ndarray, first: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong previous mask: grown or shrunk, shifted, with blobs added or cut, or only near the first click."""
    kind = rng.integers(5)
    nd = t.ndim
    if kind == 0:
        r = int(rng.integers(1, 5))
        out = ndi.binary_dilation(t, iterations=r) if rng.random() < 0.5 else ndi.binary_erosion(t, iterations=r)
    elif kind == 1:
        out = np.roll(t, tuple(int(v) for v in rng.integers(-4, 5, nd)), axis=tuple(range(nd)))
    elif kind == 2:
        sigma = rng.uniform(2, 6)
        noise = ndi.gaussian_filter(rng.standard_normal(t.shape), sigma)
        blobs = noise > np.quantile(noise, rng.uniform(0.85, 0.98))
        out = (t | blobs) if rng.random() < 0.5 else (t & ~blobs)
    elif kind == 3:
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(t.shape), first)))
        out = t & (dist <= rng.uniform(2, 12))
    else:
        out = ndi.binary_dilation(t, iterations=int(rng.integers(1, 4))) & (rng.random(t.shape) > 0.02)
        out = ndi.binary_opening(out) if rng.random() < 0.5 else out
    return out


def _fix(prev: np.ndarray, t: np.ndarray, click: Click, rng: np.random.Generator) -> np.ndarray:
    """``prev`` with the error around ``click`` partly corrected (a ball of random radius)."""
    r = rng.uniform(2, 15)
    dist2 = sum((g - c) ** 2 for g, c in zip(np.indices(t.shape), click.index))
    near = dist2 <= r * r
    out = prev.copy()
    out[near] = t[near]
    return out


def make_example(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], spec: ExampleSpec,
                 rng: np.random.Generator, centre_hint: Sequence[int] | None = None) -> PromptableExample | None:
    """Draw one training example from one object.

    Args:
        image: Spatial intensity array of the object's image.
        mask: Bool mask of the object (same shape).
        spacing: Voxel spacing (mm).
        spec: :class:`ExampleSpec` (its crop's dimensionality must match the image).
        rng: Random generator.
        centre_hint: The object's first-click voxel, when known (saves a distance transform).

    Returns:
        The example, or None when the object vanished in the crop (too thin at this FOV).

    Raises:
        ConfigError: If the image and the crop differ in dimensionality.
    """
    if image.ndim != spec.ndim or mask.shape != image.shape:
        raise ConfigError(f"image {image.shape} / mask {mask.shape} do not fit a {spec.ndim}D crop {spec.crop}")
    sp = np.asarray(spacing, float)
    nz = np.nonzero(mask)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() for a in nz])
    extent_mm = float(((hi - lo + 1) * sp).max())
    rel = float(np.exp(rng.uniform(np.log(spec.rel_size[0]), np.log(spec.rel_size[1]))))
    fov_mm = max(extent_mm / rel, float(min(spec.crop)) * float(sp.min()) * 0.5)  # at most 2x upsampling
    step_mm = fov_mm / max(spec.crop)
    step = step_mm / sp
    centre0 = np.asarray(centre_hint if centre_hint is not None else first_click(mask, spacing).index, float)
    centre = (centre0 + (lo + hi) / 2) / 2 + rng.uniform(-0.15, 0.15, spec.ndim) * fov_mm / sp
    img = resample_crop(image, centre, step, spec.crop, order=1, cval=float(np.min(image)))
    t = resample_crop(mask.astype(np.float32), centre, step, spec.crop, order=1) > 0.5
    if t.sum() < 3:
        return None
    first = first_click(t)
    u = rng.random()
    boxes: list[tuple[Sequence[int], Sequence[int]]] = []
    prev: np.ndarray | None = None
    if u < spec.p_first:
        mode, clicks = "first", [first]
    elif u < spec.p_first + spec.p_box:
        mode, clicks = "box", []
        b = box_from_mask(t, rng.uniform(0.0, 0.08), rng)
        boxes.append((tuple(int(v) for v in b.minimum), tuple(int(v) for v in b.maximum)))
    else:
        mode = "refine"
        clicks = [first]
        if rng.random() < 0.25:
            b = box_from_mask(t, rng.uniform(0.0, 0.08), rng)
            boxes.append((tuple(int(v) for v in b.minimum), tuple(int(v) for v in b.maximum)))
            clicks = []
        prev = _corrupt(t, first.index, rng)
        rounds = int(rng.integers(1, spec.max_clicks + 1))
        for k in range(rounds):
            click = next_click(t, prev)
            if click is None:
                break
            clicks.append(click)
            if k < rounds - 1:
                prev = _fix(prev, t, click, rng)
    inputs = encode_prompts(img, clicks, boxes, prev, spec.disc_radius)
    return PromptableExample(inputs, t.astype(np.float32)[None], mode, tuple(clicks))
