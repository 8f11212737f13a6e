"""The synthesis label map of the MNI152 template: brain structures plus random shells.

The bundled MNI ICBM152 2009a symmetric T1 (``medannot/data_samples/mni152``) is
**skull-stripped**: every voxel outside the intracranial envelope is 0 (about 22 % of the
197 x 233 x 189 grid is non-zero), there is no skull, scalp or face. Skull and scalp are
therefore added here as shells of random thickness around the filled envelope, and the face,
skull base and neck as a random "extra-cranial body" below and in front of the brain: a thick
region filled with a random patchwork of muscle-, fat-, bone-, air- and gland-like tissue
(real heads put muscle whose T1 intensity equals grey matter right under the temporal lobes).
See :mod:`medannot.training.synth` for how the map becomes training images.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path

import fill_voids
import numpy as np
import torch
from scipy import ndimage as ndi

from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.errors import InputError
from medannot.io import read_image

__all__ = ["MNI_DIR", "N_SYNTH_LABELS", "TARGET_LUT", "SynthLabel", "Template", "brain_label_map", "load_template", "smooth_field", "to_target"]

MNI_DIR = Path(__file__).resolve().parent.parent / "data_samples" / "mni152"
_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
_GM = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
_WM = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"


class SynthLabel(enum.IntEnum):
    """Structure labels of the synthesis label map (the network only learns 0/1/2, see TARGET_LUT)."""

    BACKGROUND = 0  # air
    GM = 1  # cortical (and cerebellar) grey matter
    WM = 2  # white matter (incl. brainstem)
    CSF = 3  # sulcal and extra-cerebral CSF inside the intracranial envelope
    VENTRICLE = 4  # CSF deeper than ``deep_mm`` below the envelope surface
    DEEP_GM = 5  # grey matter deeper than ``deep_mm`` (basal ganglia, thalamus)
    SKULL = 6
    SCALP = 7
    EXTRA_A = 8  # extra-cranial soft tissue (muscle, eyes)
    EXTRA_B = 9  # extra-cranial fat
    EXTRA_C = 10  # other extra-cranial tissue (glands, bone marrow, vessels): any intensity


N_SYNTH_LABELS = len(SynthLabel)
#: Synthesis label -> target label (0 background, 1 grey matter, 2 white matter).
TARGET_LUT = np.array([0, 1, 2, 0, 0, 1, 0, 0, 0, 0, 0], dtype=np.int64)
_BRAIN = (SynthLabel.GM, SynthLabel.WM, SynthLabel.CSF, SynthLabel.VENTRICLE, SynthLabel.DEEP_GM)


def to_target(labels: np.ndarray) -> np.ndarray:
    """Map synthesis labels (:class:`SynthLabel`) to targets 0/1/2 (int64)."""
    return TARGET_LUT[np.asarray(labels, dtype=np.intp)]


# --------------------------------------------------------------------------- template


@dataclass(frozen=True)
class Template:
    """The MNI152 template on a padded 1 mm RAS grid.

    Attributes:
        labels: Brain structures only (BACKGROUND, GM, WM, CSF, VENTRICLE, DEEP_GM), uint8.
        t1: Template T1 rescaled to 0..1 (float32), 0 outside the envelope.
        dist_out: Distance (mm) to the intracranial envelope for voxels outside it, 0 inside.
        geometry: The padded grid (1 mm, RAS).
        centre: World position (RAS mm) of the envelope's centroid.
    """

    labels: np.ndarray
    t1: np.ndarray
    dist_out: np.ndarray
    geometry: Geometry
    centre: np.ndarray


@functools.lru_cache(maxsize=2)
def load_template(pad_mm: int = 24, deep_mm: float = 14.0, pad_below_mm: int = 56) -> Template:
    """Load the bundled MNI152 T1 / GM / WM files and derive the brain label map (cached).

    Args:
        pad_mm: Margin added on every side (1 mm voxels) for skull and scalp.
        pad_below_mm: Margin added below the template, whose brainstem reaches the bottom
            slice: the last slice is repeated so the brainstem continues into a spinal cord,
            with room for the neck around it.
        deep_mm: Grey matter / CSF deeper than this below the envelope surface becomes
            DEEP_GM / VENTRICLE.

    Raises:
        InputError: If the template files are missing.
    """
    missing = [f for f in (_T1, _GM, _WM) if not (MNI_DIR / f).is_file()]
    if missing:
        raise InputError(f"MNI152 template not found ({MNI_DIR / missing[0]}); reinstall medannot with its data_samples")
    imgs = [read_image(MNI_DIR / f) for f in (_T1, _GM, _WM)]
    t1, gm, wm = (i.array[0] for i in imgs)
    affine = imgs[0].affine
    gm16, wm16 = gm.astype(np.int16), wm.astype(np.int16)
    csf16 = 255 - gm16 - wm16  # the maps sum to <= 255
    is_wm = (wm16 > gm16) & (wm16 >= csf16)  # argmax of (csf, gm, wm)
    is_gm = (gm16 >= wm16) & (gm16 >= csf16) & ~is_wm
    envelope = fill_voids.fill((t1 > 0) | ((gm16 + wm16) > 127), in_place=True)
    labels = np.where(envelope, np.uint8(SynthLabel.CSF), np.uint8(0)).astype(np.uint8)
    labels[envelope & is_gm] = SynthLabel.GM
    labels[envelope & is_wm] = SynthLabel.WM
    deep = _coarse_edt(envelope) > deep_mm
    labels[deep & (labels == SynthLabel.GM)] = SynthLabel.DEEP_GM
    labels[deep & (labels == SynthLabel.CSF)] = SynthLabel.VENTRICLE
    scale = 1.0 / max(float(np.percentile(t1[envelope], 99.5)), 1.0)
    t1n = np.where(envelope, t1.astype(np.float32) * np.float32(scale), np.float32(0.0))
    # Pad: edge-repeat below (spinal cord), zeros elsewhere.
    p = int(pad_mm)
    pad = ((p, p), (p, p), (0, p))
    labels = np.pad(labels, pad)
    t1n = np.pad(t1n, pad)
    below = int(pad_below_mm)
    labels = np.pad(labels, ((0, 0), (0, 0), (below, 0)), mode="edge")
    t1n = np.pad(t1n, ((0, 0), (0, 0), (below, 0)), mode="edge")
    env = labels > 0
    dist_out = _coarse_edt(~env)
    new_aff = affine.copy()
    new_aff[:3, 3] = affine[:3, :3] @ np.array([-p, -p, -below]) + affine[:3, 3]
    geom = Geometry.from_affine(new_aff)
    idx = np.argwhere(env[::2, ::2, below::2]).mean(axis=0) * 2 + np.array([0, 0, below])  # centroid of the original envelope
    centre = geom.index_to_world(idx)
    for a in (labels, t1n, dist_out):
        a.setflags(write=False)
    return Template(labels=labels, t1=t1n, dist_out=dist_out, geometry=geom, centre=centre)


def _coarse_edt(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm, 1 mm grid) of each True voxel to the nearest False voxel.

    Computed on a 2 mm grid and trilinearly upsampled (about 1 mm accurate, 8x cheaper
    than the full-resolution transform), float32.
    """
    coarse = ndi.distance_transform_edt(mask[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    t = torch.from_numpy(coarse)[None, None]
    full = torch.nn.functional.interpolate(t, size=mask.shape, mode="trilinear", align_corners=False)[0, 0].numpy()
    return np.where(mask, full, np.float32(0.0))


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], grid: int, std: float, channels: int = 1) -> np.ndarray:
    """Smooth random field: Gaussian values on a ``grid``^3 lattice, trilinearly upsampled to ``shape``."""
    coarse = rng.normal(0.0, std, size=(1, channels, grid, grid, grid)).astype(np.float32)
    out = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=tuple(shape), mode="trilinear", align_corners=True)
    return out[0].numpy()


def brain_label_map(
    rng: np.random.Generator | int | None = None,
    skull_mm: tuple[float, float] = (3.0, 8.0),
    scalp_mm: tuple[float, float] = (3.0, 9.0),
    csf_mm: tuple[float, float] = (0.0, 2.5),
    n_blobs: tuple[int, int] = (2, 8),
    extracranial: bool = True,
) -> Image:
    """The synthesis label map: template brain structures plus random CSF / skull / scalp shells.

    Shells are thresholds of the distance (mm) to the filled intracranial envelope, with a
    thickness that varies smoothly over the head, each drawn uniformly from its range in mm:
    an extra CSF layer (atrophy / subarachnoid space), then skull, then scalp. Below and in front
    of the brain a thick extra-cranial body (face, skull base, neck) is filled with a random
    patchwork of tissues, and a few random ellipsoids of extra-cranial tissue (5-20 mm radii)
    are placed in the lower and front part of the head (eyes, glands).

    Args:
        rng: Random generator or seed (None = seed 0).
        skull_mm: Range of the mean skull thickness (mm).
        scalp_mm: Range of the mean scalp thickness (mm).
        csf_mm: Range of the extra CSF layer outside the envelope (mm).
        n_blobs: Range (inclusive) of the number of extra-cranial blobs.
        extracranial: Add the extra-cranial body (face, skull base, neck; see
            :func:`_add_extracranial_body`).

    Returns:
        Label :class:`Image` (uint8, :class:`SynthLabel` values) on the padded 1 mm RAS template grid.
    """
    rng = np.random.default_rng(0 if rng is None else rng)
    tpl = load_template()
    shape = tpl.labels.shape
    d = tpl.dist_out
    small = tuple(max(1, s // 4) for s in shape)  # fields at 4 mm, then nearest-upsampled by slicing
    fields = smooth_field(rng, small, int(rng.integers(3, 6)), 1.0, channels=3)
    mean = [rng.uniform(*csf_mm), rng.uniform(*skull_mm), rng.uniform(*scalp_mm)]
    thick = [np.clip(m * (1.0 + 0.3 * f), 0.0, None) for m, f in zip(mean, fields)]
    up = [np.repeat(np.repeat(np.repeat(t, 4, 0), 4, 1), 4, 2) for t in thick]
    up = [np.pad(u, [(0, s - u.shape[i]) for i, s in enumerate(shape)], mode="edge")[: shape[0], : shape[1], : shape[2]] for u in up]
    b1 = up[0]
    b2 = b1 + up[1]
    b3 = b2 + up[2]
    labels = tpl.labels.copy()
    out = d > 0
    labels[out & (d <= b1)] = SynthLabel.CSF
    labels[out & (d > b1) & (d <= b2)] = SynthLabel.SKULL
    labels[out & (d > b2) & (d <= b3)] = SynthLabel.SCALP
    if extracranial:
        _add_extracranial_body(labels, d, b3, tpl, rng)
    # Extra-cranial blobs in the inferior / anterior half, outside the skull.
    cand = np.argwhere((d[::4, ::4, ::4] > 8.0) & (d[::4, ::4, ::4] < 40.0)) * 4
    centre_idx = tpl.geometry.world_to_index(tpl.centre)
    cand = cand[(cand[:, 2] < centre_idx[2]) | (cand[:, 1] > centre_idx[1] + 30)]
    nb = int(rng.integers(n_blobs[0], n_blobs[1] + 1)) if len(cand) else 0
    for _ in range(nb):
        c = cand[rng.integers(len(cand))]
        r = rng.uniform(5.0, 20.0, size=3)
        lo = np.maximum(c - r.astype(int) - 1, 0)
        hi = np.minimum(c + r.astype(int) + 2, shape)
        grids = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r)) <= 1.0
        sub = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        free = (sub == SynthLabel.BACKGROUND) | (sub == SynthLabel.SCALP) | (sub >= SynthLabel.EXTRA_A)
        sub[inside & free] = rng.choice([SynthLabel.EXTRA_A, SynthLabel.EXTRA_B, SynthLabel.EXTRA_C], p=[0.5, 0.3, 0.2])
    return Image(labels[None], tpl.geometry, ImageKind.LABEL, {"synthetic": True, "source": "MNI152 2009a template"})


def _add_extracranial_body(labels: np.ndarray, d: np.ndarray, scalp_outer: np.ndarray, tpl: Template, rng: np.random.Generator) -> None:
    """Fill a random face / skull-base / neck region outside the scalp with a tissue patchwork (in place).

    The region is the set of voxels outside the scalp whose distance (mm) to the intracranial
    envelope is below an extra thickness that ramps up from 0 above a random level under the
    brain centre (20-55 mm thick below it) and in front of a random coronal plane under the
    forehead (face, 15-40 mm), modulated by a smooth random field. Inside it, the argmax of
    4-7 smooth random fields (a Voronoi-like partition with smooth borders, cells of a few cm)
    assigns each cell a tissue: muscle-like (EXTRA_A), fat (EXTRA_B), bone (SKULL), air
    (BACKGROUND: sinuses, airway) or other (EXTRA_C). A 2-6 mm skin/fat layer covers its surface.
    """
    shape = labels.shape
    ci = tpl.geometry.world_to_index(tpl.centre)  # 1 mm RAS grid: index offsets are mm
    z = np.arange(shape[2], dtype=np.float32) - np.float32(ci[2])
    y = np.arange(shape[1], dtype=np.float32) - np.float32(ci[1])
    z_level, ramp = rng.uniform(-30.0, -5.0), rng.uniform(10.0, 30.0)
    inferior = np.clip((z_level - z) / ramp, 0.0, 1.0)[None, None, :]
    y_face, z_face = rng.uniform(25.0, 50.0), rng.uniform(-5.0, 25.0)
    face = (np.clip((y - y_face) / 15.0, 0.0, 1.0)[None, :, None] * np.clip((z_face - z) / 15.0, 0.0, 1.0)[None, None, :])
    small = tuple(max(1, s // 4) for s in shape)
    mod = _up4(1.0 + 0.3 * smooth_field(rng, small, int(rng.integers(3, 6)), 1.0)[0], shape)
    extra = (inferior * np.float32(rng.uniform(20.0, 55.0)) + face * np.float32(rng.uniform(15.0, 40.0))) * mod
    body = (d > scalp_outer) & (d <= scalp_outer + extra) & (labels == SynthLabel.BACKGROUND)
    if not body.any():
        return
    k = int(rng.integers(4, 8))
    cells = _up4(np.argmax(smooth_field(rng, small, int(rng.integers(6, 12)), 1.0, channels=k), axis=0).astype(np.uint8), shape)
    choices = np.array([SynthLabel.EXTRA_A, SynthLabel.EXTRA_B, SynthLabel.SKULL, SynthLabel.BACKGROUND, SynthLabel.EXTRA_C], dtype=np.uint8)
    tissue = rng.choice(choices, size=k, p=[0.4, 0.25, 0.12, 0.08, 0.15])
    tissue[0] = SynthLabel.EXTRA_A  # at least one muscle-like cell
    labels[body] = tissue[cells[body]]
    # Skin and subcutaneous fat over the body's outer surface.
    head = body | (d <= scalp_outer)
    skin = body & (_coarse_edt(head) <= rng.uniform(2.0, 6.0))
    labels[skin] = SynthLabel.SCALP if rng.random() < 0.5 else SynthLabel.EXTRA_B


def _up4(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-upsample a 4 mm field by 4 along each axis, cropped or edge-padded to ``shape``."""
    up = np.repeat(np.repeat(np.repeat(a, 4, 0), 4, 1), 4, 2)
    up = np.pad(up, [(0, max(0, s - up.shape[i])) for i, s in enumerate(shape)], mode="edge")
    return up[: shape[0], : shape[1], : shape[2]]
