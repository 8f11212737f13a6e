"""What every classical interactive engine shares: prompts -> crop -> engine on the crop -> mask on the image.

A subclass implements :meth:`CropEngine._segment_crop` on a normalised float32 crop with its seed map;
:meth:`CropEngine.segment` resolves and validates the prompts, picks the crop (:mod:`.roi`), runs the
engine, grows the crop while the mask reaches its inner sides, keeps the object within the boxes and
pastes the crop's mask into a full-size bool mask.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medannot.classical.interactive.roi import (
    Crop,
    box_limit,
    crop_seeds,
    downscale,
    downscale_factor,
    grow_crop,
    initial_crop,
    upscale,
)
from medannot.data.image import Image
from medannot.data.prompts import Prompts, VoxelPrompts
from medannot.errors import ConfigError, InputError

__all__ = ["CropEngine", "CropSettings", "normalise_crop"]


@dataclass(frozen=True)
class CropSettings:
    """How an engine chooses and grows its crop.

    Args:
        margin: Voxels added around the prompts' bounding box (clicks and scribbles).
        box_margin: Voxels added around boxes when boxes alone are given.
        max_grow: Times the crop may move out when the mask reaches an inner side.
        max_voxels: Largest crop worked on at full resolution; larger crops are downscaled by an integer factor.
        seed_radius: Radius (voxels) of the ball stamped at each click.
    """

    margin: int = 24
    box_margin: int = 3
    max_grow: int = 3
    max_voxels: int = 2_000_000
    seed_radius: int = 1

    def __post_init__(self) -> None:
        if self.margin < 1 or self.box_margin < 0 or self.max_grow < 0 or self.max_voxels < 64 or self.seed_radius < 0:
            raise ConfigError(f"crop settings out of range: {self}; need margin >= 1, box_margin >= 0, max_grow >= 0, "
                              "max_voxels >= 64, seed_radius >= 0")


def normalise_crop(values: np.ndarray) -> np.ndarray:
    """Float32 copy scaled so the crop's 1st..99th percentiles map to 0..1 (not clipped); constant crops -> 0."""
    arr = np.asarray(values, dtype=np.float32)
    lo, hi = np.percentile(arr, [1.0, 99.0])
    if hi - lo <= 1e-12 * max(1.0, abs(float(hi))):
        lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0:
        return np.zeros_like(arr)
    return (arr - np.float32(lo)) / np.float32(hi - lo)


@dataclass
class CropEngine:
    """Base of the classical engines (implements :class:`~medannot.data.prompts.PromptableEngine`).

    Args:
        crop: :class:`CropSettings`.
    """

    name = "crop-engine"
    needs_border_seeds = True
    crop: CropSettings = field(default_factory=CropSettings)

    def segment(self, image: Image, prompts: Prompts) -> np.ndarray:
        """Segment the one object the prompts point at.

        Args:
            image: Single-channel intensity image (2D or 3D).
            prompts: Its prompts (any space; validated and converted here).

        Returns:
            Bool mask of ``image.spatial_shape``.

        Raises:
            InputError: Bad prompts (see :meth:`Prompts.resolve`) or a multi-channel image.
        """
        if image.channels != 1:
            raise InputError(f"{self.name}: expected a single-channel image, got {image.channels} channels; convert to grey first")
        vp = prompts.resolve(image)
        return self.segment_voxels(image.array[0], vp, image.spacing)

    def segment_voxels(self, array: np.ndarray, vp: VoxelPrompts, spacing: tuple[float, ...]) -> np.ndarray:
        """:meth:`segment` on a spatial array with already resolved prompts."""
        crop = initial_crop(vp, self.crop.margin, self.crop.box_margin)
        mask_crop = self._run(array, vp, crop, spacing)
        for _ in range(self.crop.max_grow):
            # with background seeds on the crop's sides the mask stops one voxel short of them
            bigger = grow_crop(crop, mask_crop, touch=3 if self.needs_border_seeds else 1)
            if bigger is None:
                break
            crop = bigger
            mask_crop = self._run(array, vp, crop, spacing)
        out = np.zeros(vp.shape, bool)
        out[crop.slices] = mask_crop
        return out

    def _run(self, array: np.ndarray, vp: VoxelPrompts, crop: Crop, spacing: tuple[float, ...]) -> np.ndarray:
        f = downscale_factor(crop, self.crop.max_voxels)
        values = downscale(normalise_crop(array[crop.slices]), f)
        seeds = crop_seeds(vp, crop, f, self.crop.seed_radius, border=self.needs_border_seeds, values=values)
        scaled = tuple(float(s) * f for s in spacing)
        mask = self._segment_crop(values, seeds, scaled)
        mask = upscale(np.asarray(mask, bool), f, crop.size)
        allowed = box_limit(vp, crop)
        return mask if allowed is None else mask & allowed

    def _segment_crop(self, values: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
        """Mask of the crop (bool, same shape as ``values``) from its seed map (0 unknown, 1 object, 2 background)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Name and settings, for provenance."""
        return {"engine": self.name, **{k: (asdict(v) if k == "crop" else v) for k, v in vars(self).items() if not k.startswith("_")}}
