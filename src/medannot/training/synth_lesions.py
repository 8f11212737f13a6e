"""SYNTHETIC 3D lesion phantoms: volumes with bright ellipsoidal "lesions" and their boxes.

There is no real labelled 3D lesion-detection data that can be had offline, so the 3D detection
path is tested and benchmarked on these procedural phantoms. They are **synthetic**: nothing
trained or measured on them says anything about accuracy on real scans.

A phantom is a smooth random background (Gaussian-filtered noise around a soft body ellipsoid) with
``n`` non-overlapping ellipsoids of random radii (mm) and contrast, plus Gaussian noise. Every
ellipsoid is one instance; its box is the box of its voxels (:func:`medannot.data.boxes.boxes_from_instances`).
The grid may be anisotropic and oblique (any :class:`~medannot.data.Geometry`).

The data source ``synthetic-lesions`` draws fresh phantoms for ``medannot train`` (``task: detection``,
``detection.boxes.mode: instances``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medannot.data.boxes import boxes_from_instances
from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError
from medannot.training.sources import ValidationCase, augment_patch, random_patch, register_source

__all__ = ["SyntheticLesionCase", "SyntheticLesionSource", "synthetic_lesion_phantom"]


@dataclass
class SyntheticLesionCase:
    """One SYNTHETIC phantom: image, instance map, and the lesions' voxel boxes (array order, max exclusive)."""

    image: Image
    instances: Image
    boxes: np.ndarray
    radii_mm: np.ndarray


def synthetic_lesion_phantom(
    shape: Sequence[int] = (64, 64, 64),
    geometry: Geometry | None = None,
    n_lesions: int = 3,
    radius_mm: tuple[float, float] = (3.0, 8.0),
    contrast: tuple[float, float] = (0.6, 1.2),
    noise: float = 0.08,
    seed: int | np.random.Generator = 0,
) -> SyntheticLesionCase:
    """Make one SYNTHETIC 3D lesion phantom.

    Args:
        shape: Voxels per axis (3 values).
        geometry: Grid geometry (default 1 mm isotropic, identity direction); radii are in mm, so an
            anisotropic grid gives ellipsoids stretched in voxels.
        n_lesions: Number of lesions (fewer when they do not fit without touching).
        radius_mm: Range of the semi-axes (mm), drawn per lesion and axis.
        contrast: Range of the lesion intensity above the background.
        noise: Standard deviation of the added Gaussian noise.
        seed: Seed or generator.

    Returns:
        The case; the image is float32 ``(1, *shape)``, the instances uint16 (1..n).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"synthetic lesion phantoms are 3D with at least 8 voxels per axis, got shape {shape}")
    geo = geometry or Geometry(spacing=(1.0, 1.0, 1.0))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    spacing = np.asarray(geo.spacing)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"), axis=0)
    body = sum(((grid[a] - (shape[a] - 1) / 2) / (0.48 * shape[a])) ** 2 for a in range(3)) <= 1.0
    image = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 3.0) * 0.15 + 0.3 * body
    instances = np.zeros(shape, dtype=np.uint16)
    radii: list[np.ndarray] = []  # per lesion, the three radii (mm)
    for _ in range(int(n_lesions)):
        for _attempt in range(30):
            r_mm = rng.uniform(*radius_mm, size=3)
            r_vox = r_mm / spacing
            lo = np.ceil(r_vox + 1).astype(int)
            hi = np.array(shape) - lo
            if np.any(hi <= lo):
                continue
            centre = np.array([rng.integers(a, b) for a, b in zip(lo, hi)], dtype=np.float32)
            inside = sum(((grid[a] - centre[a]) / r_vox[a]) ** 2 for a in range(3)) <= 1.0
            grown = ndi.binary_dilation(inside, iterations=2)
            if inside.sum() < 4 or np.any(instances[grown]):
                continue
            k = len(radii) + 1
            instances[inside] = k
            image[inside] += rng.uniform(*contrast)
            radii.append(r_mm)
            break
    image = ndi.gaussian_filter(image, 0.7) + rng.normal(0, noise, shape).astype(np.float32)
    _, boxes = boxes_from_instances(instances)
    meta = {"synthetic": True, "description": "SYNTHETIC lesion phantom (medannot.training.synth_lesions)"}
    return SyntheticLesionCase(
        image=Image(image.astype(np.float32)[None], geo, ImageKind.INTENSITY, dict(meta)),
        instances=Image(instances[None], geo, ImageKind.LABEL, dict(meta)),
        boxes=boxes,
        radii_mm=np.array(radii).reshape(-1, 3),
    )


@register_source("synthetic-lesions")
class SyntheticLesionSource:
    """Training source of fresh SYNTHETIC lesion phantoms (for tests and benchmarks of the 3D path only).

    Args:
        shape: Phantom size (voxels); patches are cut from it.
        spacing: Voxel spacing (mm).
        n_lesions: Lesions per phantom.
        radius_mm: Range of the semi-axes (mm).
        n_validation: Number of fixed validation phantoms (seeded apart from training).
        pool: Number of training phantoms drawn once and sampled from (phantoms are slow to draw).
        fg_ratio: Probability that a patch is centred near a lesion.
        augment: As :func:`medannot.training.sources.augment_patch`.
        patch_size: Passed by the trainer.
        rng_seed: Seed.
    """

    def __init__(self, patch_size: Sequence[int], shape: Sequence[int] = (48, 48, 48), spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 n_lesions: int = 3, radius_mm: Sequence[float] = (3.0, 7.0), n_validation: int = 1, pool: int = 4,
                 fg_ratio: float = 0.7, augment: bool | dict[str, bool] = False, rng_seed: int = 0) -> None:
        if len(patch_size) != 3:
            raise ConfigError(f"synthetic-lesions is a 3D source; patch_size must have 3 values, got {list(patch_size)}")
        geo = Geometry(spacing=tuple(float(s) for s in spacing))
        rng = np.random.default_rng(rng_seed)
        r = (float(radius_mm[0]), float(radius_mm[1]))
        self.patch_size = [int(p) for p in patch_size]
        self.fg_ratio = float(fg_ratio)
        self.augment = augment
        self._train = []
        for _ in range(max(1, int(pool))):
            case = synthetic_lesion_phantom(shape, geo, n_lesions, r, seed=rng)
            lab = case.instances.array[0].astype(np.int64)
            self._train.append((case.image.array, lab, np.argwhere(lab > 0)))
        vrng = np.random.default_rng(rng_seed + 10_000)
        self._val = []
        for i in range(int(n_validation)):
            case = synthetic_lesion_phantom(shape, geo, n_lesions, r, seed=vrng)
            truth = case.instances.with_array(case.instances.array.astype(np.uint16))
            self._val.append(ValidationCase(f"synthetic-lesions-val-{i}", case.image, truth, case.instances.array[0].copy()))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One patch of a training phantom and its instance labels."""
        arr, lab, fg = self._train[int(rng.integers(len(self._train)))]
        img, lbl = random_patch(arr, lab, self.patch_size, rng, self.fg_ratio, fg)
        return augment_patch(img, lbl, rng, self.augment)

    def validation_cases(self) -> list[ValidationCase]:
        """The fixed validation phantoms with their instance truth."""
        return list(self._val)

    def describe(self) -> dict[str, Any]:
        """What this source is (for logs): always synthetic."""
        return {"synthetic": True, "training_phantoms": len(self._train), "validation_phantoms": len(self._val)}
