"""SYNTHETIC objects for the promptable network: random smooth shapes pasted into real backgrounds.

SynthSeg-style: the network must learn "the object under the click", not a class, so objects get random
shapes, sizes, intensities (brighter or darker than their surroundings), texture, blur and edge contrast,
and are pasted into real CT, MR, ultrasound, radiograph and microscopy backgrounds. Everything made here is
**synthetic** and never counts for an accuracy claim.

Backgrounds (TRAIN images only; the held-out images of :mod:`medannot.training.promptable_sources` are
excluded): the 2D views of :func:`medannot.training.modality_samples.modality_samples` without
``mr_colin27``, ``mr_abdomen`` (the overlay-lesion image) and ``mic_nuclei`` (the full nuclei image; its left
half is added instead); in 3D the MNI152 T1 and the InVesalius head CT (when installed). Shapes: thresholded
smooth noise inside a random ellipsoid (largest component), or, in 2D, one of the three liver outlines of
pydicom-data's DICOM SEG ``liver.dcm`` (a real shape whose image is not shipped), randomly scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from medannot.data.image import Image
from medannot.training.promptable_sources import _MNI, DATA_SAMPLES, NUCLEI_SPLIT_COLUMN, ObjectCase, Split, _read

__all__ = ["BACKGROUND_EXCLUDED", "SyntheticObjects", "random_shape"]

BACKGROUND_EXCLUDED = ("mr_colin27", "mr_abdomen", "mic_nuclei")
"""Modality-sample groups never used as backgrounds: they hold held-out objects."""


def _norm(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, [1.0, 99.0])
    return ((arr - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)


def random_shape(size: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random smooth, connected blob filling roughly a random ellipsoid inside a box of ``size`` voxels."""
    nd = len(size)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in size], indexing="ij")
    radii = rng.uniform(0.55, 0.95, nd)
    ell = sum((g / r) ** 2 for g, r in zip(grid, radii))
    noise = ndi.gaussian_filter(rng.standard_normal(size), sigma=[max(1.0, s * rng.uniform(0.08, 0.25)) for s in size])
    noise /= noise.std() + 1e-6
    field = 1.0 - ell + rng.uniform(0.1, 0.45) * noise
    blob = field > 0
    if not blob.any():
        blob = ell <= 1
    lab, n = ndi.label(blob)
    if n > 1:
        blob = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndi.binary_fill_holes(blob)


@dataclass
class SyntheticObjects:
    """Draws SYNTHETIC object cases (image patch + mask) in 2D or 3D.

    Args:
        ndim: 2 or 3.
        patch: Side of the background patch in voxels (the object is 4 to 60 % of it).
        seed: Seed of the generator.
    """

    ndim: int
    patch: int = 160
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.backgrounds = self._backgrounds()
        self.shapes = self._liver_shapes() if self.ndim == 2 else []

    def _backgrounds(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        if self.ndim == 2:
            from medannot.training.modality_samples import MODALITY_SOURCES, modality_samples

            groups = [s.group for s in MODALITY_SOURCES if s.group not in BACKGROUND_EXCLUDED]
            out = [s.array[0] for s in modality_samples(groups, max_side=384) if min(s.array.shape[1:]) >= 48]
            out.append(_read(DATA_SAMPLES / "stardist" / "img2d.tif").array[0][:, :NUCLEI_SPLIT_COLUMN].astype(np.float32))
        else:
            out.append(_read(DATA_SAMPLES / _MNI.format("t1")).array[0].astype(np.float32))
            from pathlib import Path

            from medannot.training.modality_samples import read_inv3_volume

            inv3 = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
            if inv3.is_file():
                out.append(read_inv3_volume(inv3))
        return [_norm(b) for b in out]

    def _liver_shapes(self) -> list[np.ndarray]:
        try:
            from medannot.annotations.dicom_seg import read_dicom_seg
            from medannot.training.promptable_sources import _package_file

            seg = read_dicom_seg(_package_file("data_store", "data/liver.dcm")).array[0]
        except Exception:  # noqa: BLE001 - an optional shape source; missing package = no liver shapes
            return []
        shapes = []
        for k in range(seg.shape[-1]):
            m = seg[..., k] > 0
            if m.sum() > 100:
                nz = np.nonzero(m)
                shapes.append(m[min(nz[0]) : max(nz[0]) + 1, min(nz[1]) : max(nz[1]) + 1])
        return shapes

    def _shape(self, size: tuple[int, ...]) -> np.ndarray:
        if self.shapes and self.rng.random() < 0.15:
            src = self.shapes[int(self.rng.integers(len(self.shapes)))]
            if self.rng.random() < 0.5:
                src = src[::-1]
            zoom = [s / d for s, d in zip(size, src.shape)]
            return ndi.zoom(src.astype(np.float32), zoom, order=1) > 0.5
        return random_shape(size, self.rng)

    def draw(self, index: int = 0) -> ObjectCase:
        """One SYNTHETIC object in a real background patch."""
        rng = self.rng
        bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        side = [min(self.patch, s) for s in bg.shape]
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(bg.shape, side)]
        patch = bg[tuple(slice(a, a + p) for a, p in zip(start, side))].copy()
        frac = rng.uniform(0.04, 0.6)
        size = tuple(max(4, int(round(p * frac * rng.uniform(0.6, 1.0)))) for p in side)
        shape = self._shape(size)
        mask = np.zeros(patch.shape, bool)
        at = [int(rng.integers(0, p - s + 1)) for p, s in zip(side, shape.shape)]
        region = tuple(slice(a, a + s) for a, s in zip(at, shape.shape))
        mask[region] = shape[tuple(slice(0, r.stop - r.start) for r in region)]
        if not mask.any():
            mask[tuple(p // 2 for p in side)] = True
        near = ndi.binary_dilation(mask, iterations=3) & ~mask
        local = float(patch[near].mean()) if near.any() else float(patch.mean())
        spread = float(patch[near].std()) if near.any() else 0.1
        contrast = rng.uniform(0.12, 0.7) * (1 if rng.random() < 0.5 else -1) + np.sign(rng.random() - 0.5) * spread * rng.uniform(0, 1)
        texture = ndi.gaussian_filter(rng.standard_normal(patch.shape), rng.uniform(0.5, 2.0)) * rng.uniform(0.0, 0.15)
        keep = rng.uniform(0.0, 0.8)  # how much of the background texture shows through the object
        obj = local + contrast + keep * (patch - local) + texture
        alpha = ndi.gaussian_filter(mask.astype(np.float32), rng.uniform(0.0, 1.5)) if rng.random() < 0.8 else mask.astype(np.float32)
        img = patch * (1 - alpha) + obj * alpha
        if rng.random() < 0.3:
            img = ndi.gaussian_filter(img, rng.uniform(0.3, 1.0))
        img = img + rng.normal(0, rng.uniform(0.0, 0.05), img.shape)
        image = Image.from_spatial(img.astype(np.float32), spacing=(1.0,) * self.ndim)
        return ObjectCase(f"synthetic-{self.ndim}d/{index}", f"synthetic-{self.ndim}d", Split.TRAIN, image, mask)
