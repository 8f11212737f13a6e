"""Training examples for the promptable network: (image crop, prompts, previous mask) -> the object's mask.

One example is a fixed-size crop (e.g. 64 x 64 or 48 x 48 x 48 voxels) resampled from a field of view (FOV)
around an object (:class:`~medannot.training.promptable_sources.ObjectCase`, real or synthetic), with crop
voxels isotropic in mm. The object's extent is ``rel_size`` (15 % to 130 % by default, log-uniform) of the
FOV's side, so the network sees small objects, objects that fill the crop and objects cut by its border (the
case where inference widens its FOV). The FOV is centred between the object's centre and its first click,
jittered.

The prompts an example starts from (:func:`initial_state`):

- ``click`` (the rest): one positive click, at the object's point farthest from its boundary (the simulated
  user's first click, :mod:`medannot.evaluation.interactive`) with probability ``p_centre_click``, else at a
  random inside voxel drawn in proportion to its distance from the boundary (people do not click the exact
  centre);
- ``box`` (``p_box``): a box from the object's extent, each side jittered by up to 8 % of its size, no click;
- ``corrupt`` (``p_corrupt``): a previous mask made by corrupting the truth (grown or shrunk, shifted, blobs
  added or cut, or only the part near the first click) and one click at the centre of its largest error: a
  previous mask that did not come from the network (another model's output, a hand-drawn mask).

Then the training hook (:mod:`medannot.training.promptable_training`) refines it RITM-style: the network
itself predicts (without gradients) 0 to ``max_iterations`` times, each time the simulated user clicks at the
centre of the largest error and the prediction becomes the previous mask (:meth:`CropState.refine`), and the
loss is taken on the last state. The encoding is :func:`medannot.inference.promptable.encode_prompts`, the one
inference uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from medannot.errors import ConfigError
from medannot.evaluation.interactive import Click, box_from_mask, first_click, next_click
from medannot.inference.promptable import CHANNELS, encode_prompts, resample_crop

__all__ = ["CHANNELS", "CropState", "ExampleSpec", "PromptableExample", "click_weights", "initial_state", "make_example",
           "sample_crop"]


@dataclass(frozen=True)
class ExampleSpec:
    """How examples are drawn.

    Args:
        crop: Crop shape in voxels (2 or 3 values).
        disc_radius: Crop voxels of a click's disc (see :func:`medannot.inference.promptable.click_map`).
        distance_radius: Crop voxels where a click's distance tail reaches 0.
        p_box: Probability of a box example.
        p_corrupt: Probability of a corrupted-previous-mask example.
        p_centre_click: Probability that a first click is the object's centre (else a random inside voxel).
        rel_size: Range of the object's extent relative to the FOV side.
    """

    crop: tuple[int, ...] = (64, 64)
    disc_radius: float = 2.0
    distance_radius: float = 10.0
    p_box: float = 0.2
    p_corrupt: float = 0.15
    p_centre_click: float = 0.5
    rel_size: tuple[float, float] = (0.15, 1.3)

    def __post_init__(self) -> None:
        if len(self.crop) not in (2, 3) or min(self.crop) < 8:
            raise ConfigError(f"crop must have 2 or 3 sides >= 8 voxels, got {self.crop}")
        if not 0 <= self.p_box + self.p_corrupt <= 1:
            raise ConfigError("p_box + p_corrupt must lie in [0, 1]")
        if not 0 < self.rel_size[0] <= self.rel_size[1]:
            raise ConfigError(f"rel_size must be two increasing positive fractions, got {self.rel_size}")

    @property
    def ndim(self) -> int:
        """Spatial dimensions."""
        return len(self.crop)


@dataclass
class CropState:
    """One example in the crop: intensities, truth, and the prompts so far.

    Attributes:
        image: Crop intensities (raw units, float32).
        truth: The object's mask in the crop (bool).
        clicks: Clicks so far (crop voxel indices).
        boxes: Inclusive ``(lo, hi)`` crop corners.
        previous: Previous mask (bool) or None.
        mode: How the example started (``click``, ``box``, ``corrupt``).
    """

    image: np.ndarray
    truth: np.ndarray
    clicks: list[Click] = field(default_factory=list)
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    previous: np.ndarray | None = None
    mode: str = "click"

    def inputs(self, spec: ExampleSpec) -> np.ndarray:
        """The network input (:data:`CHANNELS`, float32)."""
        nd = self.truth.ndim
        pos = np.array([c.index for c in self.clicks if c.positive], float).reshape(-1, nd)
        neg = np.array([c.index for c in self.clicks if not c.positive], float).reshape(-1, nd)
        return encode_prompts(self.image, pos, neg, self.boxes, self.previous, spec.disc_radius, spec.distance_radius)

    def refine(self, prediction: np.ndarray) -> bool:
        """The simulated user's next step: ``prediction`` becomes the previous mask, a click goes to its largest error.

        Returns:
            False when the prediction is perfect (no click added; the previous mask is still updated).
        """
        self.previous = np.asarray(prediction, bool)
        click = next_click(self.truth, self.previous)
        if click is None:
            return False
        self.clicks.append(click)
        return True


def sample_crop(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], spec: ExampleSpec, rng: np.random.Generator,
                centre_hint: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Resample a crop around one object: ``(intensities float32, truth bool)``, or None when the object vanishes.

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
    step = (fov_mm / max(spec.crop)) / sp
    centre0 = np.asarray(centre_hint if centre_hint is not None else first_click(mask, spacing).index, float)
    centre = (centre0 + (lo + hi) / 2) / 2 + rng.uniform(-0.15, 0.15, spec.ndim) * fov_mm / sp
    img = resample_crop(image, centre, step, spec.crop, order=1, cval=float(np.min(image)))
    t = resample_crop(mask, centre, step, spec.crop, order=1) > 0.5
    if t.sum() < 3:
        return None
    return img, t


def _random_inside(t: np.ndarray, rng: np.random.Generator) -> Click:
    """A positive click inside ``t``, drawn in proportion to the distance from the boundary."""
    dist = ndi.distance_transform_edt(np.pad(t, 1))[tuple(slice(1, -1) for _ in t.shape)].ravel()
    p = dist / dist.sum()
    k = int(rng.choice(dist.size, p=p))
    return Click(tuple(int(v) for v in np.unravel_index(k, t.shape)), True)


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
        noise = ndi.gaussian_filter(rng.standard_normal(t.shape), rng.uniform(2, 6))
        blobs = noise > np.quantile(noise, rng.uniform(0.85, 0.98))
        out = (t | blobs) if rng.random() < 0.5 else (t & ~blobs)
    elif kind == 3:
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(t.shape), first)))
        out = t & (dist <= rng.uniform(2, 12))
    else:
        out = ndi.binary_dilation(t, iterations=int(rng.integers(1, 4))) & (rng.random(t.shape) > 0.02)
        out = ndi.binary_opening(out) if rng.random() < 0.5 else out
    return np.asarray(out, bool)


def initial_state(image: np.ndarray, truth: np.ndarray, spec: ExampleSpec, rng: np.random.Generator) -> CropState:
    """The prompts an example starts from (see the module docstring)."""
    state = CropState(image, truth)
    u = rng.random()
    if u < spec.p_box:
        b = box_from_mask(truth, rng.uniform(0.0, 0.08), rng)
        state.boxes.append((tuple(int(v) for v in b.minimum), tuple(int(v) for v in b.maximum)))
        state.mode = "box"
        return state
    first = first_click(truth) if rng.random() < spec.p_centre_click else _random_inside(truth, rng)
    state.clicks.append(first)
    if u < spec.p_box + spec.p_corrupt:
        state.mode = "corrupt"
        state.refine(_corrupt(truth, first.index, rng))
    return state


def click_weights(clicks: Sequence[Click], shape: Sequence[int], radius: float, weight: float) -> np.ndarray:
    """Loss weights: 1, plus ``weight`` at each click falling linearly to 0 at ``radius`` crop voxels (float32)."""
    out = np.ones(tuple(shape), np.float32)
    if not clicks or weight <= 0:
        return out
    seeds = np.ones(tuple(shape), bool)
    seeds[tuple(np.array([c.index for c in clicks]).T)] = False
    dist = ndi.distance_transform_edt(seeds)
    return out + np.float32(weight) * np.clip(1.0 - dist / max(radius, 1e-6), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PromptableExample:
    """``inputs`` (len(CHANNELS), *crop) and ``target`` (1, *crop), float32; ``mode`` and ``clicks`` for inspection."""

    inputs: np.ndarray
    target: np.ndarray
    mode: str
    clicks: tuple[Click, ...]


def make_example(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float], spec: ExampleSpec,
                 rng: np.random.Generator, centre_hint: Sequence[int] | None = None) -> PromptableExample | None:
    """One example in its initial state (no network refinement): for inspection and tests.

    Returns:
        The example, or None when the object vanished in the crop (too thin at this FOV).

    Raises:
        ConfigError: If the image and the crop differ in dimensionality.
    """
    crop = sample_crop(image, mask, spacing, spec, rng, centre_hint)
    if crop is None:
        return None
    state = initial_state(*crop, spec, rng)
    return PromptableExample(state.inputs(spec), state.truth.astype(np.float32)[None], state.mode, tuple(state.clicks))
