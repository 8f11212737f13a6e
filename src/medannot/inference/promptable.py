"""The promptable network as an engine: prompts -> crop around them -> network -> the object's mask.

:class:`NetworkEngine` implements :class:`~medannot.data.prompts.PromptableEngine` for a class-agnostic network
that takes ``(image, positive clicks, negative clicks, box, previous mask)`` (:data:`CHANNELS`) on a fixed-size
crop and returns one logit map. One interaction:

1. the field of view (FOV, a square / cube in mm, crop voxels isotropic in mm) is centred on the prompts: at
   the image's finest resolution around a lone first click, or ``fov_margin`` x the extent of every prompt
   (box, clicks, scribbles, previous mask) when that is larger; it is moved inward to stay inside the image
   where it fits;
2. image, prompts and previous mask are sampled into the crop (:func:`resample_crop` reads only the region it
   needs, so the cost follows the crop, not the volume) and encoded (:func:`encode_prompts`);
3. while the mask reaches a side of the crop that lies inside the image (and the FOV does not yet hold the
   whole image), the FOV is re-centred on the mask and doubled (at most ``max_grow`` times); with ``zoom_in``
   a lone first click is predicted again in a FOV fitted to its first mask (small objects upsampled, down to
   ``min_fov`` of the native FOV);
4. the probabilities are sampled back (linear) onto the image voxels under the FOV and thresholded; with
   ``keep_clicked`` only the connected parts that hold a positive click or scribble are kept.

Clicks are encoded as discs with a distance tail: 1 within ``disc_radius`` crop voxels of a click, falling
linearly to 0 at ``distance_radius`` (one channel for positive and one for negative clicks and scribbles).
The settings live in a bundle's ``promptable`` section (:class:`PromptableSettings`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cc3d
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import ndimage as ndi

from medannot.data.image import Image
from medannot.data.prompts import Prompts, VoxelPrompts
from medannot.errors import InputError, ModelError
from medannot.models.bundle import Bundle

__all__ = [
    "CHANNELS",
    "NetworkEngine",
    "PromptableSettings",
    "click_map",
    "encode_prompts",
    "normalise_intensity",
    "resample_crop",
]

CHANNELS = ("image", "positive", "negative", "box", "previous")


class PromptableSettings(BaseModel):
    """A promptable bundle's ``promptable`` section: crop and prompt encoding.

    Attributes:
        crop: Crop the network sees, in voxels (2 or 3 values).
        disc_radius: Crop voxels around a click that are 1 in its channel.
        distance_radius: Crop voxels at which a click's value has fallen linearly to 0 (>= ``disc_radius``).
        fov_margin: The FOV is at least this times the prompts' extent.
        max_grow: Times the FOV may double while the mask reaches the crop's border.
        threshold: Probability above which a voxel is object.
        keep_clicked: Keep only the connected parts of the mask that hold a positive click or scribble.
        min_fov: Smallest FOV as a fraction of the native one (``crop`` voxels at the image's finest spacing):
            below 1 a small object is upsampled (0.5: at most 2x, the most the training examples show).
        zoom_in: After a lone first click (object size unknown, native FOV), predict again with the FOV fitted
            to the first mask (``fov_margin`` x its extent, at least ``min_fov``); a click-only analogue of a box.
        channels: Names of the input channels, in order (:data:`CHANNELS`).
    """

    model_config = ConfigDict(extra="forbid")
    crop: list[int]
    disc_radius: float = Field(2.0, ge=0)
    distance_radius: float = Field(10.0, gt=0)
    fov_margin: float = Field(1.4, ge=1.0)
    max_grow: int = Field(3, ge=0, le=6)
    threshold: float = Field(0.5, gt=0, lt=1)
    keep_clicked: bool = True
    min_fov: float = Field(1.0, gt=0, le=1)
    zoom_in: bool = False
    channels: list[str] = Field(default_factory=lambda: list(CHANNELS))

    @model_validator(mode="after")
    def _check(self) -> PromptableSettings:
        if len(self.crop) not in (2, 3) or min(self.crop) < 8:
            raise ValueError(f"crop must have 2 or 3 sides of at least 8 voxels, got {self.crop}")
        if self.distance_radius < self.disc_radius:
            raise ValueError(f"distance_radius ({self.distance_radius}) must be at least disc_radius ({self.disc_radius})")
        if list(self.channels) != list(CHANNELS):
            raise ValueError(f"channels must be {list(CHANNELS)} (this medannot's encoding), got {self.channels}")
        return self

    @classmethod
    def parse(cls, data: dict[str, Any] | None, where: str = "bundle.json") -> PromptableSettings:
        """Validate a ``promptable`` section.

        Raises:
            ModelError: Missing section or invalid fields (named).
        """
        if not data:
            raise ModelError(f"{where}: a promptable bundle needs a 'promptable' section with at least 'crop'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'promptable'}: {e['msg']}" for e in exc.errors())
            raise ModelError(f"{where}: invalid promptable section: {msg}") from None


# ----------------------------------------------------------------------------- sampling and encoding


def resample_crop(array: np.ndarray, centre: Sequence[float] | np.ndarray, step: Sequence[float] | np.ndarray,
                  shape: Sequence[int], order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``array`` on an axis-aligned grid: crop voxel ``c`` lies at source index ``centre + (c - (n-1)/2) * step``.

    Only the source region under the crop (plus one voxel) is read and converted, so the cost does not depend
    on the size of ``array``.

    Args:
        array: Source array (any numeric or bool dtype, 2D or 3D).
        centre: Source index (fractional) of the crop's centre.
        step: Source voxels per crop voxel, per axis.
        shape: Crop shape (voxels).
        order: Spline order (0 nearest, 1 linear).
        cval: Value outside the source.

    Returns:
        float32 array of ``shape``.
    """
    step_a = np.asarray(step, float)
    shape_a = np.asarray(shape, float)
    offset = np.asarray(centre, float) - (shape_a - 1) / 2 * step_a
    end = offset + (shape_a - 1) * step_a
    lo = np.clip(np.floor(np.minimum(offset, end)).astype(int) - 1, 0, np.asarray(array.shape))
    hi = np.clip(np.ceil(np.maximum(offset, end)).astype(int) + 2, 0, np.asarray(array.shape))
    if np.any(hi <= lo):
        return np.full(tuple(int(s) for s in shape), cval, np.float32)
    sub = np.asarray(array[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))], dtype=np.float32)
    return ndi.affine_transform(sub, step_a, offset=offset - lo, output_shape=tuple(int(s) for s in shape), order=order,
                                mode="constant", cval=cval, prefilter=False)


def normalise_intensity(crop: np.ndarray) -> np.ndarray:
    """float32 crop scaled so its 1st..99th percentiles map to 0..1, clipped to [-0.5, 1.5]."""
    lo, hi = np.percentile(crop, [1.0, 99.0])
    return np.clip((crop - lo) / max(float(hi - lo), 1e-6), -0.5, 1.5).astype(np.float32)


def click_map(shape: Sequence[int], points: np.ndarray, disc_radius: float, distance_radius: float) -> np.ndarray:
    """Disc-with-distance-tail map of ``points`` (crop voxel indices, ``(n, ndim)``; those outside are ignored).

    Returns:
        float32 map: 1 within ``disc_radius`` of a point, falling linearly to 0 at ``distance_radius``; all 0
        without points.
    """
    out = np.zeros(tuple(shape), np.float32)
    pts = np.rint(np.asarray(points, float).reshape(-1, len(shape))).astype(np.int64)
    pts = pts[np.all((pts >= 0) & (pts < np.asarray(shape)), axis=1)]
    if not len(pts):
        return out
    seeds = np.ones(tuple(shape), bool)
    seeds[tuple(pts.T)] = False
    dist = ndi.distance_transform_edt(seeds)
    span = max(distance_radius - disc_radius, 1e-6)
    return np.clip(1.0 - (dist - disc_radius) / span, 0.0, 1.0).astype(np.float32)


def encode_prompts(image: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                   boxes: Sequence[tuple[Sequence[float], Sequence[float]]], previous: np.ndarray | None,
                   disc_radius: float, distance_radius: float) -> np.ndarray:
    """Stack the network input (:data:`CHANNELS`) of one crop.

    Args:
        image: Crop intensities (raw units; normalised here).
        positive: ``(n, ndim)`` crop voxel indices of positive clicks and scribble voxels.
        negative: The same for negative ones.
        boxes: Inclusive ``(lo, hi)`` crop voxel corners (clipped to the crop).
        previous: Previous mask in the crop (bool or probabilities in [0, 1]) or None.
        disc_radius: See :func:`click_map`.
        distance_radius: See :func:`click_map`.

    Returns:
        float32 ``(len(CHANNELS), *crop)``.
    """
    shape = image.shape
    box = np.zeros(shape, np.float32)
    for b_lo, b_hi in boxes:
        lo = np.clip(np.ceil(np.asarray(b_lo, float) - 1e-6), 0, np.asarray(shape)).astype(int)
        hi = np.clip(np.floor(np.asarray(b_hi, float) + 1e-6) + 1, 0, np.asarray(shape)).astype(int)
        hi = np.maximum(hi, np.minimum(lo + 1, np.asarray(shape)))
        box[tuple(slice(int(a), int(c)) for a, c in zip(lo, hi))] = 1.0
    prev = np.zeros(shape, np.float32) if previous is None else np.asarray(previous, np.float32)
    return np.stack([normalise_intensity(image), click_map(shape, positive, disc_radius, distance_radius),
                     click_map(shape, negative, disc_radius, distance_radius), box, prev])


# ----------------------------------------------------------------------------- the engine


@dataclass
class _View:
    """One FOV: crop voxel ``c`` lies at image index ``offset + c * step``."""

    centre: np.ndarray
    step: np.ndarray
    crop: tuple[int, ...]

    @property
    def offset(self) -> np.ndarray:
        return self.centre - (np.asarray(self.crop, float) - 1) / 2 * self.step

    def to_crop(self, idx: np.ndarray) -> np.ndarray:
        return (np.asarray(idx, float).reshape(-1, len(self.crop)) - self.offset) / self.step

    def box_of(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre (image indices) and extent (image voxels) of a non-empty crop mask's bounding box."""
        nz = np.argwhere(mask)
        lo, hi = nz.min(0), nz.max(0)
        return self.offset + (lo + hi) / 2 * self.step, (hi - lo + 1) * self.step


@dataclass
class NetworkEngine:
    """A promptable network behind :class:`~medannot.data.prompts.PromptableEngine` (see the module docstring).

    Args:
        network: Takes ``(N, len(CHANNELS), *crop)`` and returns ``(N, 1, *crop)`` logits.
        settings: Crop and encoding (:class:`PromptableSettings`).
        name: Engine name (a bundle's name).
        bundle: The bundle the network came from (provenance: version, weights sha256), if any.
        timings: Seconds of the last interaction by step (filled by :meth:`segment`).
    """

    network: torch.nn.Module
    settings: PromptableSettings
    name: str = "network"
    bundle: Bundle | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        """Spatial dimensions the network works in."""
        return len(self.settings.crop)

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        """Segment the one object the prompts point at.

        Args:
            image: Single-channel intensity image with as many spatial dimensions as the network.
            prompts: The object's prompts (any space; validated and converted here).

        Returns:
            Bool mask of ``image.spatial_shape``.

        Raises:
            InputError: Bad prompts (see :meth:`Prompts.resolve`), a multi-channel image, or an image of another
                dimensionality than the network.
        """
        if image.channels != 1:
            raise InputError(f"{self.name}: expected a single-channel image, got {image.channels} channels; convert to grey first")
        if image.ndim != self.ndim:
            raise InputError(f"{self.name} is a {self.ndim}D network and the image is {image.ndim}D; "
                             f"choose a {image.ndim}D engine (--engine growcut works on both)")
        vp = prompts.resolve(image)
        return self.segment_voxels(image.array[0], vp, image.spacing)

    def segment_voxels(self, array: np.ndarray, vp: VoxelPrompts, spacing: Sequence[float]) -> np.ndarray:
        """:meth:`segment` on a spatial array with already resolved prompts."""
        start = time.perf_counter()
        s = self.settings
        sp = np.asarray(spacing, float)
        lo, hi = vp.extent()
        native = float(max(s.crop)) * float(sp.min())
        prompted = s.fov_margin * float(((hi - lo + 1) * sp).max())
        pos = vp.points[vp.point_positive]
        lone_click = not len(vp.boxes) and (vp.previous is None or not vp.previous.any()) and len(pos) and prompted <= native
        if lone_click:  # clicks alone do not tell the object's size: start at the native resolution
            fov = native
            centre = pos[0].astype(float) if len(vp.points) == 1 else (lo + hi) / 2.0
        else:
            fov, centre = max(s.min_fov * native, prompted), (lo + hi) / 2.0
        prob, view, n_forward = self._grow(array, vp, centre, fov, sp)
        if lone_click and s.zoom_in:
            m = prob > s.threshold
            if m.any():
                centre, extent = view.box_of(m)
                zoom = max(s.min_fov * native, s.fov_margin * float((extent * sp).max()))
                if zoom < 0.8 * fov:
                    prob, view, n_more = self._grow(array, vp, centre, zoom, sp)
                    n_forward += n_more
        out = self._paste(prob, view, array.shape)
        if s.keep_clicked:
            out = keep_clicked(out, vp)
        self.timings = {"seconds": time.perf_counter() - start, "forward_passes": float(n_forward)}
        return out

    def _grow(self, array: np.ndarray, vp: VoxelPrompts, centre: np.ndarray, fov: float,
              sp: np.ndarray) -> tuple[np.ndarray, _View, int]:
        """Predict in a FOV of ``fov`` mm, re-centred and doubled while the mask reaches the crop's border.

        Returns:
            Probabilities in the last crop, that crop's view, and the number of forward passes.
        """
        s = self.settings
        crop = tuple(int(c) for c in s.crop)
        full = np.asarray(array.shape) * sp
        n_forward = 0
        for k in range(s.max_grow + 1):
            centre = _inside(np.asarray(centre, float), fov / sp, np.asarray(array.shape))
            view = _View(centre, np.full(len(crop), fov / max(crop)) / sp, crop)
            prob = self._predict(array, vp, view)
            n_forward += 1
            m = prob > s.threshold
            whole = bool(np.all(fov >= full))
            if not _reaches_open_side(m, view, array.shape) or whole or k == s.max_grow:
                break
            centre = view.box_of(m)[0]
            fov = min(2 * fov, float(full.max()) * 1.05)
        return prob, view, n_forward

    def _predict(self, array: np.ndarray, vp: VoxelPrompts, view: _View) -> np.ndarray:
        s = self.settings
        img = resample_crop(array, view.centre, view.step, view.crop, order=1, cval=float(np.min(array)) if array.size else 0.0)
        pos = np.concatenate([view.to_crop(vp.points[vp.point_positive]), view.to_crop(vp.scribble_voxels[vp.scribble_positive])])
        neg = np.concatenate([view.to_crop(vp.points[~vp.point_positive]), view.to_crop(vp.scribble_voxels[~vp.scribble_positive])])
        boxes = []
        for b in vp.boxes:
            c = view.to_crop(np.asarray(b, float))
            boxes.append((np.minimum(c[0], c[1]), np.maximum(c[0], c[1])))
        prev = None
        if vp.previous is not None and vp.previous.any():
            prev = resample_crop(vp.previous, view.centre, view.step, view.crop, order=1)
        x = encode_prompts(img, pos, neg, boxes, prev, s.disc_radius, s.distance_radius)
        self.network.eval()
        with torch.inference_mode():
            logits = self.network(torch.from_numpy(x[None]))
        return torch.sigmoid(logits)[0, 0].numpy()

    def _paste(self, prob: np.ndarray, view: _View, shape: tuple[int, ...]) -> np.ndarray:
        """Probabilities sampled back (linear) onto the image voxels around the predicted object; bool mask."""
        out = np.zeros(shape, bool)
        m = prob > self.settings.threshold
        if not m.any():
            return out
        nz = np.argwhere(m)
        lo = np.clip(np.floor(view.offset + (nz.min(0) - 1) * view.step).astype(int), 0, np.asarray(shape) - 1)
        hi = np.clip(np.ceil(view.offset + (nz.max(0) + 1) * view.step).astype(int) + 1, 1, np.asarray(shape))
        sub_shape = tuple(int(b - a) for a, b in zip(lo, hi))
        sub = ndi.affine_transform(prob, 1.0 / view.step, offset=(lo - view.offset) / view.step, output_shape=sub_shape,
                                   order=1, mode="grid-constant", cval=0.0, prefilter=False)
        out[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))] = sub > self.settings.threshold
        return out

    def describe(self) -> dict[str, Any]:
        """Name, bundle version and weights hash, and settings, for provenance."""
        out: dict[str, Any] = {"engine": self.name}
        if self.bundle is not None:
            out.update(version=self.bundle.version, sha256=self.bundle.spec.sha256 or "")
        return {**out, **self.settings.model_dump(mode="json")}


def _reaches_open_side(mask: np.ndarray, view: _View, shape: Sequence[int]) -> bool:
    """Whether ``mask`` (in the crop) touches a side of the crop that lies inside the image.

    A side on (or beyond) the image's border is closed: an object cut by the image's edge cannot grow there, and
    widening the FOV for it only shrinks the object in the crop.
    """
    first = view.offset
    last = view.offset + (np.asarray(view.crop, float) - 1) * view.step
    for axis in range(mask.ndim):
        if first[axis] > 0.5 and mask.take(0, axis=axis).any():
            return True
        if last[axis] < shape[axis] - 1.5 and mask.take(-1, axis=axis).any():
            return True
    return False


def _inside(centre: np.ndarray, fov_voxels: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """``centre`` moved so the FOV stays inside the image where it fits (centred on the image where it does not)."""
    half = fov_voxels / 2
    lo, hi = half - 0.5, shape - 0.5 - half
    return np.where(lo <= hi, np.clip(centre, lo, np.maximum(lo, hi)), (shape - 1) / 2)


def keep_clicked(mask: np.ndarray, vp: VoxelPrompts) -> np.ndarray:
    """The connected parts of ``mask`` that hold a positive click or scribble voxel (``mask`` itself when none does)."""
    seeds = vp.seeds(True)
    if not len(seeds) or not mask.any():
        return mask
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0) + 1
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    lab = cc3d.connected_components(sub, connectivity=8 if mask.ndim == 2 else 26)
    inside = seeds[np.all((seeds >= lo) & (seeds < hi), axis=1)] - lo
    keep = np.unique(lab[tuple(inside.T)]) if len(inside) else np.zeros(0, int)
    keep = keep[keep != 0]
    if not len(keep):
        return mask
    out = np.zeros_like(mask)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = np.isin(lab, keep)
    return out
