"""SynthSeg-style domain randomisation for brain tissue segmentation (GM / WM).

The only labelled brain we ship is the MNI ICBM152 2009a symmetric template
(``medannot/data_samples/mni152``): one *average*, skull-stripped T1 (the file is
brain-masked: every voxel outside the intracranial envelope is 0, there is no skull or
scalp) with grey- and white-matter probability maps. Users' scans are single subjects
with skull, scalp, noise and bias field, at other resolutions and orientations. Following
SynthSeg (Billot et al., Medical Image Analysis 2023) the network never sees the template
T1 as such: images are *synthesised from a label map* with random deformations, random
per-structure contrasts, added skull / scalp / CSF shells, partial-volume blur, thick
slices, bias fields, noise and gamma, so it learns shape, not one contrast.

- :func:`brain_label_map` builds the synthesis label map (:class:`SynthLabel` values) on a
  padded 1 mm RAS grid: GM / WM by argmax of the probability maps, CSF = the rest of the
  filled envelope (ventricles and deep grey matter split off by depth), then skull and scalp
  as shells of random, smoothly varying thickness (mm) around the envelope, and a few
  random extra-cranial blobs (muscle, fat, eyes) below and in front of the brain.
- :func:`synthesize` turns a label map into one training example ``(image, target)`` on a
  2 mm RAS working grid (what the bundle's preprocessing produces from any input); the
  target holds 0 background, 1 grey matter, 2 white matter.

Everything is NumPy / SciPy (one ``map_coordinates`` call for the deformation) plus
``torch.nn.functional.interpolate`` for smooth random fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry
from medannot.data.image import Image
from medannot.errors import ConfigError, InputError
from medannot.training.synth_labels import (
    MNI_DIR,
    N_SYNTH_LABELS,
    TARGET_LUT,
    SynthLabel,
    brain_label_map,
    load_template,
    smooth_field,
    to_target,
)

__all__ = [
    "SynthLabel",
    "SynthParams",
    "TARGET_LUT",
    "brain_label_map",
    "load_template",
    "MNI_DIR",
    "random_spatial_coords",
    "render_intensities",
    "synthesize",
    "to_target",
]


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SynthParams:
    """Ranges of the random synthesis (SynthSeg-style); lengths in mm, angles in degrees.

    Attributes:
        patch_size: Output patch (voxels) on the working grid.
        spacing_mm: Working grid spacing (mm, isotropic RAS).
        max_rotation_deg: Rotation about each axis drawn from +-this.
        scale_range: Per-axis scaling range.
        max_shear: Off-diagonal shear terms drawn from +-this.
        max_offset_mm: Patch centre = brain centre + uniform offset of up to this per axis.
        elastic_std_mm: Maximum standard deviation of the elastic displacement (mm).
        elastic_grid: Range of the lattice size of the elastic field.
        p_t1_like: Probability of T1-like means (else arbitrary contrast).
        p_template_texture: Probability of using the template T1 as texture inside the brain.
        p_skull_stripped: Probability of blanking skull, scalp and extra tissue (skull-stripped input).
        intensity_std_max: Maximum within-structure standard deviation (0..1 intensity units).
        pv_sigma_mm: Maximum partial-volume blur (Gaussian sigma, mm).
        p_low_res: Probability of simulating thick slices along one random axis (or all axes).
        slice_mm: Range of the simulated slice thickness (mm).
        bias_std: Maximum standard deviation of the log bias field.
        noise_std_max: Maximum noise standard deviation (0..1 intensity units).
        p_rician: Probability of Rician (magnitude) noise instead of Gaussian.
        gamma_std: Standard deviation of log(gamma).
        p_zero_background: Probability that air is exactly 0 (no noise), as in masked or
            resampled scans.
        p_fov_cut: Probability that the patch is cut by a random plane beyond which the image
            is exactly 0 and the target background (the edge of a scan's field of view, or the
            zero fill of a resampled oblique scan).
        percentiles: Output percentile normalisation (the bundle's preprocessing).
    """

    patch_size: tuple[int, int, int] = (64, 64, 64)
    spacing_mm: float = 2.0
    max_rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    max_shear: float = 0.04
    max_offset_mm: float = 30.0
    elastic_std_mm: float = 3.0
    elastic_grid: tuple[int, int] = (4, 8)
    p_t1_like: float = 0.5
    p_template_texture: float = 0.25
    p_skull_stripped: float = 0.15
    intensity_std_max: float = 0.08
    pv_sigma_mm: float = 1.6
    p_low_res: float = 0.5
    slice_mm: tuple[float, float] = (2.5, 6.0)
    bias_std: float = 0.3
    noise_std_max: float = 0.05
    p_rician: float = 0.5
    gamma_std: float = 0.25
    p_zero_background: float = 0.25
    p_fov_cut: float = 0.25
    percentiles: tuple[float, float] = (0.5, 99.5)

    @classmethod
    def from_dict(cls, values: dict | None) -> SynthParams:
        """Build from a config mapping; unknown keys raise :class:`ConfigError`."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown synthesis parameter(s) {unknown}; expected some of: {', '.join(sorted(known))}")
        for key in ("patch_size", "scale_range", "elastic_grid", "slice_mm", "percentiles"):
            if key in values:
                values[key] = tuple(values[key])
        return replace(cls(), **values)


# --------------------------------------------------------------------------- spatial


def _random_linear(rng: np.random.Generator, p: SynthParams) -> np.ndarray:
    """Random rotation x scale x shear (3x3), mapping subject mm to template mm."""
    a = np.deg2rad(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg, size=3))
    c, s = np.cos(a), np.sin(a)
    rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
    ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
    rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
    shear = np.eye(3) + np.triu(rng.uniform(-p.max_shear, p.max_shear, size=(3, 3)), 1)
    scale = np.diag(rng.uniform(*p.scale_range, size=3))
    return rx @ ry @ rz @ shear @ scale


def random_spatial_coords(
    out_affine: np.ndarray,
    shape: tuple[int, ...],
    src_geometry: Geometry,
    centre: np.ndarray,
    rng: np.random.Generator,
    params: SynthParams,
) -> np.ndarray:
    """Source voxel coordinates for every output voxel under a random affine + elastic deformation.

    The output voxel ``i`` lies at world ``x = out_affine @ i`` (mm); it reads the source at
    ``y = A (x - centre) + centre + u(i)`` where ``A`` is a random rotation / scale / shear
    about ``centre`` and ``u`` a smooth random displacement (mm).

    Returns:
        float32 array ``(3, *shape)`` of continuous source voxel indices.
    """
    shape = tuple(int(s) for s in shape)
    lin = _random_linear(rng, params)
    src_inv = np.linalg.inv(src_geometry.affine)
    m = src_inv[:3, :3] @ lin @ out_affine[:3, :3]  # index -> source index (linear part)
    off = src_inv[:3, :3] @ (lin @ (out_affine[:3, 3] - centre) + centre) + src_inv[:3, 3]
    coords = np.empty((3, *shape), np.float32)
    ax = [np.arange(s, dtype=np.float32) for s in shape]
    for d in range(3):
        coords[d] = (
            np.float32(off[d])
            + (np.float32(m[d, 0]) * ax[0])[:, None, None]
            + (np.float32(m[d, 1]) * ax[1])[None, :, None]
            + (np.float32(m[d, 2]) * ax[2])[None, None, :]
        )
    std = rng.uniform(0.0, params.elastic_std_mm)
    if std > 0:
        grid = int(rng.integers(params.elastic_grid[0], params.elastic_grid[1] + 1))
        disp = smooth_field(rng, shape, grid, std, channels=3)  # mm in world axes
        disp_idx = np.einsum("ij,j...->i...", (src_inv[:3, :3]).astype(np.float32), disp)
        coords += disp_idx
    return coords


# --------------------------------------------------------------------------- intensities

# T1-like mean ranges (0..1) per SynthLabel.
_T1_MEANS = np.array(
    [
        (0.0, 0.08),  # background
        (0.40, 0.60),  # GM
        (0.70, 0.90),  # WM
        (0.05, 0.25),  # CSF
        (0.03, 0.22),  # ventricles
        (0.50, 0.72),  # deep GM
        (0.0, 0.20),  # skull
        (0.55, 1.00),  # scalp
        (0.25, 0.60),  # muscle / eyes
        (0.70, 1.00),  # fat
        (0.20, 0.95),  # other extra-cranial tissue (glands, marrow, vessels)
    ]
)


def _means(rng: np.random.Generator, p: SynthParams) -> np.ndarray:
    if rng.random() < p.p_t1_like:
        mu = rng.uniform(_T1_MEANS[:, 0], _T1_MEANS[:, 1])
    else:
        mu = rng.uniform(0.0, 1.0, size=N_SYNTH_LABELS)
        if rng.random() < 0.9:  # air is dark in every real MR contrast
            mu[SynthLabel.BACKGROUND] = rng.uniform(0.0, 0.08)
        if rng.random() < 0.5:  # ventricles usually look like CSF
            mu[SynthLabel.VENTRICLE] = mu[SynthLabel.CSF] + rng.normal(0.0, 0.03)
    return mu


def render_intensities(
    labels: np.ndarray,
    rng: np.random.Generator,
    params: SynthParams,
    spacing_mm: tuple[float, ...],
    texture: np.ndarray | None = None,
    low_res: bool = True,
) -> np.ndarray:
    """Random-contrast image from a synthesis label map (float32, percentile-normalised to 0..1).

    Steps: Gaussian mixture per structure (means T1-like or arbitrary), optional template T1
    texture inside the brain, partial-volume blur, optional thick-slice simulation along random
    axes (``low_res``), multiplicative smooth bias field, Gaussian or Rician noise, gamma, then
    percentile normalisation.

    Args:
        labels: :class:`SynthLabel` array (3D).
        rng: Random generator.
        params: Synthesis ranges.
        spacing_mm: Voxel spacing of ``labels`` (mm).
        texture: Template T1 (0..1) sampled on the same grid, used as brain texture with
            probability ``params.p_template_texture``; None = never.
        low_res: Simulate thick slices (training); False when the grid itself is the acquisition grid.
    """
    p = params
    lab = labels.astype(np.intp, copy=False)
    mu = _means(rng, p)
    sd = rng.uniform(0.0, p.intensity_std_max, size=N_SYNTH_LABELS)
    if rng.random() < p.p_skull_stripped:
        for k in (SynthLabel.SKULL, SynthLabel.SCALP, SynthLabel.EXTRA_A, SynthLabel.EXTRA_B, SynthLabel.EXTRA_C):
            mu[k], sd[k] = mu[SynthLabel.BACKGROUND], sd[SynthLabel.BACKGROUND]
    img = mu.astype(np.float32)[lab]
    img += sd.astype(np.float32)[lab] * rng.standard_normal(lab.shape, dtype=np.float32)
    if texture is not None and rng.random() < p.p_template_texture:
        brain = (lab >= SynthLabel.GM) & (lab <= SynthLabel.DEEP_GM)
        tex = texture * np.float32(rng.uniform(0.7, 1.2)) + np.float32(rng.uniform(-0.1, 0.1))
        img[brain] = tex[brain]
    spacing = np.asarray(spacing_mm, dtype=float)
    sigma = rng.uniform(0.0, p.pv_sigma_mm) / spacing
    if np.any(sigma > 0.1):
        img = ndi.gaussian_filter(img, sigma, mode="nearest", truncate=2.5)
    if low_res and rng.random() < p.p_low_res:
        img = _thick_slices(img, rng, p, spacing)
    bias = np.exp(smooth_field(rng, img.shape, int(rng.integers(3, 6)), rng.uniform(0.0, p.bias_std))[0])
    img *= bias
    std = np.float32(rng.uniform(0.0, p.noise_std_max))
    if rng.random() < p.p_rician:
        img = np.sqrt((img + std * rng.standard_normal(img.shape, dtype=np.float32)) ** 2 + (std * rng.standard_normal(img.shape, dtype=np.float32)) ** 2)
    else:
        img += std * rng.standard_normal(img.shape, dtype=np.float32)
    if rng.random() < p.p_zero_background:
        img[lab == SynthLabel.BACKGROUND] = 0.0
    img = _percentile(img, 0.0, 100.0)
    img = np.power(img, np.float32(np.exp(rng.normal(0.0, p.gamma_std))), dtype=np.float32)
    return _percentile(img, *p.percentiles)


def _percentile(img: np.ndarray, lower: float, upper: float) -> np.ndarray:
    if lower <= 0.0 and upper >= 100.0:
        lo, hi = float(img.min()), float(img.max())
    else:
        lo, hi = (float(v) for v in np.percentile(img, [lower, upper]))
    if hi <= lo:
        return np.zeros_like(img, dtype=np.float32)
    out = (img.astype(np.float32, copy=False) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def _thick_slices(img: np.ndarray, rng: np.random.Generator, p: SynthParams, spacing: np.ndarray) -> np.ndarray:
    """Blur and subsample along one random axis (or all axes, 1 in 4) to a thick-slice spacing, then upsample back."""
    axes = [int(rng.integers(3))] if rng.random() < 0.75 else [0, 1, 2]
    thick = rng.uniform(*p.slice_mm)
    sigma = np.zeros(3)
    size = list(img.shape)
    for a in axes:
        factor = thick / spacing[a]
        if factor <= 1.05:
            continue
        sigma[a] = 0.42 * factor  # FWHM ~ slice thickness
        size[a] = max(2, int(round(img.shape[a] / factor)))
    if not np.any(sigma > 0):
        return img
    img = ndi.gaussian_filter(img, sigma, mode="nearest", truncate=2.5)
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    low = torch.nn.functional.interpolate(t, size=tuple(size), mode="trilinear", align_corners=True)
    back = torch.nn.functional.interpolate(low, size=img.shape, mode="trilinear", align_corners=True)
    return back[0, 0].numpy()


# --------------------------------------------------------------------------- one training example


def synthesize(
    label_map: Image,
    rng: np.random.Generator,
    params: SynthParams | None = None,
    texture: Image | None = None,
    centre: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic training example on the 2 mm RAS working grid.

    The label map is deformed (random affine about the brain centre + smooth elastic field)
    onto a ``params.patch_size`` patch of ``params.spacing_mm`` voxels with one nearest-neighbour
    ``map_coordinates`` call; intensities are then generated from the deformed labels
    (:func:`render_intensities`), so image and target are aligned by construction.

    Args:
        label_map: Synthesis label map (:class:`SynthLabel` values), e.g. :func:`brain_label_map`.
        rng: Random generator.
        params: Synthesis ranges (default :class:`SynthParams`).
        texture: Template T1 (0..1) on the label map's grid; optional brain texture.
        centre: World point (RAS mm) of the brain centre: the random affine turns about it and
            the patch centre is drawn within ``params.max_offset_mm`` of it (default: the
            MNI152 envelope centroid).

    Returns:
        ``(image, target)``: float32 ``(*patch_size)`` in 0..1 and int64 ``(*patch_size)`` in {0, 1, 2}.

    Raises:
        InputError: If ``label_map`` is not a 3D single-channel label image.
    """
    p = params or SynthParams()
    if label_map.ndim != 3 or label_map.channels != 1 or not label_map.is_label:
        raise InputError(f"synthesize needs a 3D single-channel label map, got {label_map!r}")
    if centre is None:
        centre = load_template().centre
    spacing = float(p.spacing_mm)
    shape = tuple(int(s) for s in p.patch_size)
    patch_centre = np.asarray(centre, float) + rng.uniform(-p.max_offset_mm, p.max_offset_mm, size=3)
    out_aff = np.diag([spacing, spacing, spacing, 1.0])
    out_aff[:3, 3] = patch_centre - spacing * (np.asarray(shape) - 1) / 2.0
    coords = random_spatial_coords(out_aff, shape, label_map.geometry, np.asarray(centre, float), rng, p)
    labels = ndi.map_coordinates(label_map.array[0], coords, order=0, mode="constant", cval=0, prefilter=False)
    tex = None
    if texture is not None and rng.random() < p.p_template_texture:
        tex = ndi.map_coordinates(texture.array[0], coords, order=1, mode="constant", cval=0.0, prefilter=False)
        p = replace(p, p_template_texture=1.0)
    image = render_intensities(labels, rng, p, (spacing,) * 3, texture=tex, low_res=True)
    target = to_target(labels)
    if rng.random() < p.p_fov_cut:
        cut = _random_half_space(shape, rng)
        image[cut] = 0.0
        target[cut] = 0
    return image, target


def _random_half_space(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the voxels beyond a random plane that cuts off 5-40 % of the patch."""
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij", sparse=True)
    proj = sum(np.float32(n) * g for n, g in zip(normal, grids))
    return np.asarray(proj > np.float32(np.quantile(proj, 1.0 - rng.uniform(0.05, 0.40))))


# The "synth-brain" data source and the semi-synthetic subjects live in synth_source.py;
# importing it here registers the source whenever medannot.training.sources loads this module.
from medannot.training import synth_source as _synth_source  # noqa: E402,F401
