"""Classical annotators on real images, against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import feature, filters, segmentation

from medannot.classical import edges, list_methods, run_method
from medannot.data import Image
from medannot.errors import ConfigError, InputError


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def test_list_methods() -> None:
    assert list_methods() == ["otsu", "multiotsu", "threshold", "watershed", "region-growing"]
    with pytest.raises(ConfigError, match="expected one of: otsu"):
        run_method("otsue", Image.from_spatial(np.zeros((3, 3))))


def test_otsu_on_nuclei_reaches_dice_08(nuclei_pair: tuple[Image, np.ndarray]) -> None:
    img, mask = nuclei_pair
    out = run_method("otsu", img)
    assert out.is_label and out.array.dtype == np.uint8 and out.same_grid(img)
    assert out.meta["threshold"] == pytest.approx(filters.threshold_otsu(img.array[0].astype(np.float32)))
    assert dice(out.array[0] > 0, mask > 0) > 0.8


def test_multiotsu_labels_match_skimage(t1_slab: Image) -> None:
    out = run_method("multiotsu", t1_slab, classes=4)
    ts = filters.threshold_multiotsu(t1_slab.array[0], classes=4)
    np.testing.assert_array_equal(out.array[0], np.digitize(t1_slab.array[0], ts))
    assert set(np.unique(out.array)) == {0, 1, 2, 3}


def test_fixed_threshold_range(t1_slab: Image) -> None:
    out = run_method("threshold", t1_slab, lower=50, upper=80)
    a = t1_slab.array[0]
    np.testing.assert_array_equal(out.array[0].astype(bool), (a >= 50) & (a <= 80))
    with pytest.raises(ConfigError):
        run_method("threshold", t1_slab)
    with pytest.raises(ConfigError, match="no parameter 'low'; valid: lower, sigma_mm, upper"):
        run_method("threshold", t1_slab, low=3)


def test_watershed_on_nuclei(nuclei_pair: tuple[Image, np.ndarray]) -> None:
    img, mask = nuclei_pair
    out = run_method("watershed", img, sigma_mm=1.0, marker_distance_mm=2.0)
    assert dice(out.array[0] > 0, mask > 0) > 0.8
    n = int(out.array.max())
    assert 60 < n < 200 and np.array_equal(np.unique(out.array), np.arange(n + 1))
    sem = run_method("watershed", img, sigma_mm=1.0, instances_out=False)
    np.testing.assert_array_equal(sem.array > 0, out.array > 0)
    # given markers: same as skimage's watershed of our gradient
    markers = np.zeros(mask.shape, np.int32)
    markers[mask == 0] = 0
    markers[ndi.binary_erosion(mask == 0, iterations=5)] = 1
    markers[ndi.binary_erosion(mask > 0, iterations=2)] = 2
    given = run_method("watershed", img, markers=markers, instances_out=False)
    grad = filters.sobel(ndi.gaussian_filter(img.array[0].astype(np.float32), 1.0, mode="nearest"))
    ref = segmentation.watershed(grad, markers) == 2
    assert dice(given.array[0] > 0, ref) > 0.99


def test_watershed_3d(t1_slab: Image) -> None:
    out = run_method("watershed", t1_slab, sigma_mm=1.0)
    assert out.array.shape == t1_slab.array.shape and out.array.max() >= 1


def test_edges_2d_canny_and_3d_gradient(nuclei_pair: tuple[Image, np.ndarray], t1_slab: Image) -> None:
    img, _ = nuclei_pair
    e2 = edges(img, sigma_mm=2.0)
    assert e2.meta["method"] == "canny"
    np.testing.assert_array_equal(e2.array[0].astype(bool), feature.canny(img.array[0].astype(np.float32), sigma=2.0))
    e3 = edges(t1_slab, sigma_mm=1.0)
    assert e3.meta["method"] == "gradient-magnitude" and 0 < e3.array.mean() < 0.5


def test_region_growing_tolerance_equals_skimage_flood(nuclei_pair: tuple[Image, np.ndarray]) -> None:
    img, mask = nuclei_pair
    a = img.array[0].astype(np.float32)
    for seed, tol in [((455, 430), 30.0), ((309, 57), 50.0), ((100, 100), 5.0)]:
        ours = run_method("region-growing", img, seed=list(seed), tolerance=tol)
        ref = segmentation.flood(a, seed, tolerance=tol, connectivity=1)
        np.testing.assert_array_equal(ours.array[0].astype(bool), ref)
        ours8 = run_method("region-growing", img, seed=list(seed), tolerance=tol, connectivity=8)
        np.testing.assert_array_equal(ours8.array[0].astype(bool), segmentation.flood(a, seed, tolerance=tol, connectivity=2))


def test_region_growing_returns_the_seeded_nucleus(nuclei_pair: tuple[Image, np.ndarray]) -> None:
    img, mask = nuclei_pair
    nucleus = mask == mask[455, 430]
    out = run_method("region-growing", img, seed=[455, 430], k_std=2.5)
    assert dice(out.array[0] > 0, nucleus) > 0.9
    # the same seed given in world mm on a shifted, anisotropic grid
    from medannot.data import Geometry

    moved = Image(img.array, Geometry(spacing=(0.5, 2.0), origin=(10.0, -4.0)))
    world = moved.geometry.index_to_world([455, 430])
    out_w = run_method("region-growing", moved, seed=world.tolist(), seed_space="world", k_std=2.5)
    np.testing.assert_array_equal(out_w.array, out.array)
    capped = run_method("region-growing", img, seed=[455, 430], k_std=2.5, max_size_mm=100)
    assert 50 < capped.array.sum() <= 100 and np.all(capped.array <= out.array)
    with pytest.raises(InputError, match="outside"):
        run_method("region-growing", img, seed=[600, 0], tolerance=1)
    with pytest.raises(ConfigError, match="exactly one"):
        run_method("region-growing", img, seed=[1, 1])


def test_multichannel_refused(nuclei_pair: tuple[Image, np.ndarray]) -> None:
    img, _ = nuclei_pair
    two = Image(np.concatenate([img.array, img.array]), img.geometry)
    with pytest.raises(InputError, match="single-channel"):
        run_method("otsu", two)
