"""Semi-synthetic brain subjects and the ``synth-brain`` training data source.

:func:`make_subject` renders one *semi-synthetic* subject at a native acquisition grid
(any spacing, any orientation, optionally oblique): the MNI152 label map with random shells
(:func:`~medannot.training.synth.brain_label_map`), randomly deformed, with random contrast,
skull, scalp, bias and noise; thick slices are simulated by averaging sub-slices. The truth
(0 background, 1 grey matter, 2 white matter) is the same deformed label map at the voxel
centres. These subjects are derived from the training template: they test robustness to
resolution, orientation, contrast and artefacts, they are *not* independent subjects.

Seeds: training label maps use seeds derived from the run seed (``SeedSequence([seed, 7, i])``),
validation subjects 10_000-19_999 and evaluation / test subjects 20_000 and above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry, axcodes_direction
from medannot.data.image import Image, ImageKind
from medannot.errors import ConfigError
from medannot.training.sources import ValidationCase, register_source
from medannot.training.synth import (
    SynthParams,
    brain_label_map,
    load_template,
    random_spatial_coords,
    render_intensities,
    synthesize,
    to_target,
)

__all__ = ["SynthBrainSource", "make_subject", "DEFAULT_VALIDATION"]


#: Held-out validation subjects used while training (seeds never used for training).
DEFAULT_VALIDATION: list[dict[str, Any]] = [
    {"name": "val-lps-1x1x3mm", "seed": 10001, "spacing": [1.0, 1.0, 3.0], "axcodes": "LPS"},
    {"name": "val-pir-1mm", "seed": 10002, "spacing": [1.0, 1.0, 1.0], "axcodes": "PIR"},
    {"name": "val-ras-oblique15-1.5mm", "seed": 10003, "spacing": [1.5, 1.5, 1.5], "axcodes": "RAS", "rotation_deg": [15.0, 0.0, 5.0]},
]




def make_subject(
    seed: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    axcodes: str = "RAS",
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
    fov_mm: Sequence[float] = (180.0, 216.0, 200.0),
    params: SynthParams | None = None,
    scale: float = 1000.0,
) -> tuple[Image, Image]:
    """One semi-synthetic T1-like (or random-contrast) head on a native acquisition grid.

    Args:
        seed: Random seed (use >= 10_000: never used for training label maps).
        spacing: Voxel spacing (mm) of the array axes; an axis of 3 mm or more is rendered as
            the mean of an odd number of 1-2 mm sub-slices (thick-slice partial volume).
        axcodes: Storage orientation (e.g. ``"LPS"``, ``"PIR"``).
        rotation_deg: Oblique rotation of the grid about world x, y, z (degrees).
        fov_mm: Field of view along world R-L, A-P, S-I (mm) before rotation, centred on the head.
        params: Synthesis ranges (contrast, noise, bias...; the patch fields are ignored).
        scale: Intensities are returned in ``0..scale`` (arbitrary scanner units).

    Returns:
        ``(image, truth)``: float32 intensity image and uint8 label image (0 background,
        1 grey matter, 2 white matter) on the same grid.
    """
    rng = np.random.default_rng(int(seed))
    p = params or SynthParams()
    p = replace(p, max_rotation_deg=min(p.max_rotation_deg, 10.0), max_offset_mm=0.0)
    tpl = load_template()
    label_map = brain_label_map(rng)
    spacing_mm = np.asarray(spacing, dtype=float)
    if spacing_mm.shape != (3,) or np.any(spacing_mm <= 0):
        raise ConfigError(f"spacing must be 3 positive values in mm, got {spacing_mm.tolist()}")
    direction = axcodes_direction(axcodes, rotation_deg)
    # FOV along each array axis: the world extent of the axis it points along.
    world_axis = np.argmax(np.abs(axcodes_direction(axcodes)), axis=0)
    extent = np.asarray(fov_mm, dtype=float)[world_axis]
    shape = np.maximum(1, np.round(extent / spacing_mm)).astype(int)
    whole = np.floor(spacing_mm + 1e-6).astype(int)
    sub = np.maximum(1, np.where(whole % 2 == 1, whole, whole - 1))  # odd number of >= 1 mm sub-slices
    fine_spacing = spacing_mm / sub
    fine_shape = shape * sub
    centre = tpl.centre + rng.uniform(-5.0, 5.0, size=3)
    origin = centre - direction @ (fine_spacing * (fine_shape - 1) / 2.0)
    fine_geom = Geometry(spacing=tuple(fine_spacing), origin=tuple(origin), direction=direction)
    coords = random_spatial_coords(fine_geom.affine, tuple(fine_shape), label_map.geometry, tpl.centre, rng, p)
    labels = ndi.map_coordinates(label_map.array[0], coords, order=0, mode="constant", cval=0, prefilter=False)
    texture = None
    if rng.random() < p.p_template_texture:
        texture = ndi.map_coordinates(tpl.t1, coords, order=1, mode="constant", cval=0.0, prefilter=False)
        p = replace(p, p_template_texture=1.0)
    del coords
    fine = render_intensities(labels, rng, p, tuple(fine_spacing), texture=texture, low_res=False)
    # Thick slices: mean of the sub-slices; truth at the central sub-slice.
    img = fine.reshape(shape[0], sub[0], shape[1], sub[1], shape[2], sub[2]).mean(axis=(1, 3, 5), dtype=np.float32)
    centre_lab = labels[sub[0] // 2 :: sub[0], sub[1] // 2 :: sub[1], sub[2] // 2 :: sub[2]]
    truth = to_target(centre_lab).astype(np.uint8)
    first = fine_geom.index_to_world((sub - 1) / 2.0)  # centre of voxel 0 of the coarse grid
    geom = Geometry(spacing=tuple(spacing), origin=tuple(first), direction=direction)
    meta = {"synthetic": True, "seed": int(seed), "note": "semi-synthetic, derived from the training template; not an independent subject"}
    image = Image((img * np.float32(scale))[None].astype(np.float32), geom, ImageKind.INTENSITY, dict(meta))
    return image, Image(truth[None], geom, ImageKind.LABEL, dict(meta))


@register_source("synth-brain")
class SynthBrainSource:
    """SynthSeg-style training examples from the MNI152 template (see :mod:`medannot.training.synth`).

    Args:
        patch_size: Training patch (voxels) on the working grid; passed by the trainer.
        spacing_mm: Working grid spacing (mm); must match the bundle's ``resample_to_spacing``.
        n_label_maps: Number of label maps (random skull / scalp / CSF shells and extra-cranial
            blobs) drawn once at start; every sample deforms one of them.
        synth: Overrides of :class:`~medannot.training.synth.SynthParams` fields.
        validation: Held-out subjects, each ``{"name", "seed" (>= 10000), "spacing", "axcodes",
            "rotation_deg"}``; default :data:`DEFAULT_VALIDATION`.
        preprocessing, spatial_dims: Passed by the trainer (checked, otherwise unused: the
            synthesis already produces the working grid and the normalisation).
        rng_seed: Run seed (label-map variants).

    Raises:
        ConfigError: Bad parameters or a validation seed in the training range.
    """

    def __init__(
        self,
        patch_size: Sequence[int] = (64, 64, 64),
        spacing_mm: float = 2.0,
        n_label_maps: int = 8,
        synth: dict[str, Any] | None = None,
        validation: list[dict[str, Any]] | None = None,
        preprocessing: list[dict[str, Any]] | None = None,
        spatial_dims: int = 3,
        rng_seed: int = 0,
    ) -> None:
        if spatial_dims != 3 or len(patch_size) != 3:
            raise ConfigError(f"synth-brain is 3D: needs spatial_dims 3 and a 3-value patch_size, got {spatial_dims}, {list(patch_size)}")
        if n_label_maps < 1:
            raise ConfigError(f"data.params.n_label_maps must be >= 1, got {n_label_maps}")
        px, py, pz = (int(s) for s in patch_size)
        self.params = replace(SynthParams.from_dict(synth), patch_size=(px, py, pz), spacing_mm=float(spacing_mm))
        self.validation = [dict(v) for v in (DEFAULT_VALIDATION if validation is None else validation)]
        for v in self.validation:
            if int(v.get("seed", -1)) < 10_000:
                raise ConfigError(f"validation subject {v.get('name')!r}: seed must be >= 10000 (held out from training), got {v.get('seed')}")
        tpl = load_template()
        self.texture = Image(tpl.t1[None], tpl.geometry)
        self.centre = tpl.centre
        self.label_maps = [brain_label_map(np.random.default_rng(np.random.SeedSequence([int(rng_seed), 7, i]))) for i in range(int(n_label_maps))]
        self._val: list[ValidationCase] | None = None

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One synthetic example: image float32 ``(1, *patch)``, target int64 ``(*patch)`` in {0, 1, 2}."""
        lm = self.label_maps[int(rng.integers(len(self.label_maps)))]
        image, target = synthesize(lm, rng, self.params, texture=self.texture, centre=self.centre)
        return image[None], target

    def validation_cases(self) -> list[ValidationCase]:
        """Held-out semi-synthetic subjects at native resolution and orientation (raw, with truth)."""
        if self._val is None:
            self._val = []
            for v in self.validation:
                image, truth = make_subject(
                    int(v["seed"]), v.get("spacing", (1.0, 1.0, 1.0)), v.get("axcodes", "RAS"), v.get("rotation_deg", (0.0, 0.0, 0.0))
                )
                self._val.append(ValidationCase(str(v.get("name", f"subject-{v['seed']}")), image, truth))
        return list(self._val)
