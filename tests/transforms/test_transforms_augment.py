"""Random augmentation: image and label stay aligned; same seed, same result."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import ConfigError, GeometryError
from medannot.transforms import build_transforms
from medannot.transforms.augment import _displacement, affine, augment, elastic, flip, rand_noise

SPATIAL = [
    {"name": "rand_flip", "params": {"p": 0.9}},
    {"name": "rand_affine", "params": {"degrees": 25, "scale": [-0.2, 0.2], "isotropic": False}},
    {"name": "rand_elastic", "params": {"control_spacing_mm": 12, "magnitude_mm": 2.5}},
]


def _pair(ndim: int, spacing: tuple[float, ...]) -> tuple[Image, Image]:
    rng = np.random.default_rng(0)
    shape = (48, 40) if ndim == 2 else (32, 28, 20)
    lab = np.zeros(shape, np.uint8)
    for v in (1, 2, 3):  # a few blocks of different labels
        start = [int(rng.integers(2, s // 2)) for s in shape]
        lab[tuple(slice(a, a + s // 3) for a, s in zip(start, shape))] = v
    geom = Geometry(spacing=spacing)
    return Image(lab.astype(np.float32)[None], geom), Image(lab[None], geom, ImageKind.LABEL)


@pytest.mark.parametrize("ndim, spacing", [(2, (1.0, 1.0)), (2, (0.7, 2.0)), (3, (1.0, 1.5, 3.0))])
@pytest.mark.parametrize("spec", SPATIAL, ids=[s["name"] for s in SPATIAL])
def test_spatial_augmentation_keeps_image_and_label_aligned(ndim: int, spacing: tuple[float, ...], spec: dict) -> None:
    img, lab = _pair(ndim, spacing)
    out_img, out_lab = augment(img, lab, rng=np.random.default_rng(3), specs=[spec])
    assert out_lab is not None and out_lab.array.dtype == np.uint8 and out_lab.same_grid(img)
    assert not np.array_equal(out_lab.array, lab.array)  # something happened
    a, b = out_img.array[0], out_lab.array[0]

    def misaligned(label_arr: np.ndarray) -> float:
        # away from label borders (where linear interpolation blends) the intensity equals the label
        interior = ndi.minimum_filter(label_arr, 5) == ndi.maximum_filter(label_arr, 5)
        return float(np.mean(np.abs(a[interior] - label_arr[interior]) > 1e-3))

    assert misaligned(b) < 0.002 and np.mean(np.rint(a) != b) < 0.03


def test_affine_nearest_on_image_equals_label_exactly() -> None:
    img, lab = _pair(3, (1.0, 1.5, 3.0))
    moved_img = affine(img, [10, -5, 20], [1.1, 0.9, 1.0], order=0)
    moved_lab = affine(lab, [10, -5, 20], [1.1, 0.9, 1.0])
    np.testing.assert_array_equal(moved_img.array.astype(np.uint8), moved_lab.array)
    np.testing.assert_array_equal(flip(lab, [0, 2]).array[0], lab.array[0][::-1, :, ::-1])
    disp = _displacement(img.spatial_shape, img.spacing, 10.0, 3.0, np.random.default_rng(0))
    np.testing.assert_array_equal(elastic(img, disp, order=0).array.astype(np.uint8), elastic(lab, disp).array)


def test_rotation_is_in_world_mm() -> None:
    # a 90 degree rotation on a 1 x 2 mm grid maps a 20 mm x 10 mm bar onto a 10 mm x 20 mm bar
    lab = np.zeros((41, 21), np.uint8)
    lab[10:31, 8:13] = 1  # 21 px * 1 mm along axis 0, 5 px * 2 mm along axis 1 -> 21 x 10 mm
    img = Image(lab[None], Geometry(spacing=(1.0, 2.0)), ImageKind.LABEL)
    out = affine(img, [90.0], [1.0, 1.0]).array[0]
    rows, cols = np.nonzero(out)
    assert abs((rows.max() - rows.min() + 1) * 1.0 - 10) <= 1.0
    assert abs((cols.max() - cols.min() + 1) * 2.0 - 21) <= 2.0


def test_reproducible_with_seed_and_differs_otherwise(mni_slab: Image) -> None:
    lab = Image((mni_slab.array > 60).astype(np.uint8), mni_slab.geometry, ImageKind.LABEL)
    specs = [*SPATIAL, {"name": "rand_gamma"}, {"name": "rand_scale_intensity"},
             {"name": "rand_bias_field", "params": {"order": 2}}, {"name": "rand_noise", "params": {"std": 0.05}}]
    a = augment(mni_slab, lab, rng=np.random.default_rng(42), specs=specs)
    b = augment(mni_slab, lab, rng=np.random.default_rng(42), specs=specs)
    c = augment(mni_slab, lab, rng=np.random.default_rng(43), specs=specs)
    np.testing.assert_array_equal(a[0].array, b[0].array)
    np.testing.assert_array_equal(a[1].array, b[1].array)  # type: ignore[union-attr]
    assert not np.array_equal(a[0].array, c[0].array)
    comp = build_transforms(specs)
    assert comp.is_random
    np.testing.assert_array_equal(comp(mni_slab, rng=np.random.default_rng(42)).array, a[0].array)


def test_intensity_augmentations_leave_label_and_grid(mni_slab: Image) -> None:
    lab = Image((mni_slab.array > 60).astype(np.uint8), mni_slab.geometry, ImageKind.LABEL)
    for name in ("rand_gamma", "rand_scale_intensity", "rand_bias_field", "rand_noise"):
        img2, lab2 = augment(mni_slab, lab, rng=np.random.default_rng(1), specs=[{"name": name}])
        assert lab2 is lab and img2.same_grid(mni_slab) and img2.array.dtype == np.float32
        assert not np.array_equal(img2.array, mni_slab.array)
    noisy, _ = rand_noise(mni_slab, rng=np.random.default_rng(0), std=[0.2, 0.2])
    ratio = float((noisy.array - mni_slab.array).std() / mni_slab.array.std())
    assert ratio == pytest.approx(0.2, rel=0.05)
    same, _ = rand_noise(mni_slab, rng=np.random.default_rng(0), p=0.0)
    assert same is mni_slab


def test_augment_errors(mni_slab: Image) -> None:
    other = Image(np.zeros((1, 4, 4, 4), np.uint8), Geometry(spacing=(1, 1, 1)), ImageKind.LABEL)
    with pytest.raises(GeometryError):
        augment(mni_slab, other, rng=np.random.default_rng(0), specs=[{"name": "rand_flip"}])
    with pytest.raises(ConfigError, match="rand_affine"):
        build_transforms([{"name": "rand_affine", "params": {"degree": 3}}])
