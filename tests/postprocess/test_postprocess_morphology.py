"""Morphology vs scikit-image / scipy, anisotropic elements, and the spec pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import morphology

from medannot.errors import ConfigError
from medannot.postprocess import (
    apply_postprocessing,
    binary_close,
    binary_open,
    fill_holes,
    structuring_element,
)


def test_open_close_match_skimage_isotropic(nuclei_mask: np.ndarray, wm_slab: np.ndarray) -> None:
    fg = nuclei_mask > 0
    np.testing.assert_array_equal(binary_open(fg, 3.0, (1.0, 1.0)), morphology.opening(fg, morphology.disk(3), mode="ignore"))
    np.testing.assert_array_equal(binary_close(fg, 3.0, (1.0, 1.0)), morphology.closing(fg, morphology.disk(3), mode="ignore"))
    ball = morphology.ball(2).astype(bool)
    np.testing.assert_array_equal(binary_open(wm_slab, 2.0, (1, 1, 1)), morphology.opening(wm_slab > 0, ball, mode="ignore"))
    np.testing.assert_array_equal(binary_close(wm_slab, 2.0, (1, 1, 1)), morphology.closing(wm_slab > 0, ball, mode="ignore"))


def test_structuring_element_is_anisotropic() -> None:
    el = structuring_element(2.0, (0.5, 1.0, 2.0))
    assert el.shape == (9, 5, 3)
    assert el[8, 2, 1] and el[4, 4, 1] and el[4, 2, 2] and not el[8, 4, 1]
    assert structuring_element(0.4, (1.0, 1.0)).shape == (1, 1)


def test_anisotropic_open_uses_mm() -> None:
    # 2 mm x 1 mm pixels, radius 2 mm: the element reaches 1 pixel along axis 0 and 2 along axis 1
    m = np.zeros((20, 40), bool)
    m[5, 5:35] = True  # one pixel (2 mm) thick along axis 0: removed
    m[10:18, 10:15] = True  # 16 mm x 5 mm: its core survives
    m[2:12, 37] = True  # one pixel (1 mm) thick along axis 1: removed
    out = binary_open(m, 2.0, (2.0, 1.0))
    assert not out[5].any() and not out[:, 37].any() and out[11:17, 10:15].all()
    # isotropic 1 mm pixels, radius 1 mm: a cross element
    iso = binary_open(m, 1.0, (1.0, 1.0))
    assert not iso[5].any() and iso[11:17, 11:14].all()


def test_fill_holes_2d_3d_vs_scipy(wm_slab: np.ndarray) -> None:
    ring = np.zeros((9, 9), np.uint8)
    ring[2:7, 2:7] = 1
    ring[3:6, 3:6] = 0
    ring[4, 4] = 2  # another label inside the hole is kept
    out = fill_holes(ring, 1)
    assert out[4, 4] == 2 and out[3, 3] == 1 and out[0, 0] == 0
    filled = fill_holes(wm_slab)
    np.testing.assert_array_equal(filled.astype(bool), ndi.binary_fill_holes(wm_slab > 0))
    assert not fill_holes(np.zeros((3, 3, 3), np.uint8)).any()


def test_apply_postprocessing(nuclei_mask: np.ndarray) -> None:
    lab = (nuclei_mask > 0).astype(np.uint8)
    lab[nuclei_mask % 2 == 1] = 2
    spec = {"*": [{"name": "remove_small_objects", "params": {"min_size_mm": 150}}],
            "1": [{"name": "keep_largest_component"}, {"name": "fill_holes"}],
            "2": [{"name": "close", "params": {"radius_mm": 1}}]}
    out = apply_postprocessing(lab, (1.0, 1.0), spec)
    assert out.dtype == np.uint8 and lab.max() == 2
    n1 = ndi.label(out == 1, structure=np.ones((3, 3)))[1]
    assert n1 == 1
    sizes2 = np.bincount(ndi.label(out == 2, structure=np.ones((3, 3)))[0].ravel())[1:]
    assert sizes2.min() >= 150
    assert not apply_postprocessing(np.zeros((8, 8), np.uint8), (1, 1), spec).any()
    np.testing.assert_array_equal(apply_postprocessing(lab, (1, 1), {}), lab)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"1": [{"name": "dilate"}]}, "expected one of"),
        ({"one": []}, "label values"),
        ({"1": [{"name": "open", "params": {"radius": 1}}]}, "'open'"),
        ({"1": [{"name": "remove_small_objects", "params": {"min_size_mm": -1}}]}, "min_size_mm"),
        ({"1": {"name": "open"}}, "list of steps"),
    ],
)
def test_apply_postprocessing_bad_spec(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        apply_postprocessing(np.ones((3, 3), np.uint8), (1, 1), spec)


def test_group_keeps_largest_component_of_the_union_like_monai() -> None:
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    rng = np.random.default_rng(3)
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[5:25, 5:25, 5:25] = 1
    lab[10:20, 10:20, 10:20] = 2  # WM inside GM: one object of the union
    lab[30:34, 30:34, 30:34] = 1  # a stray GM blob
    lab[30:33, 2:5, 30:33] = 2  # a stray WM blob
    lab[rng.random(lab.shape) < 0.002] = 1  # speckle
    out = apply_postprocessing(lab, (1.0, 1.0, 1.0), {"1+2": [{"name": "keep_largest_component", "params": {"connectivity": 26}}]})
    monai = KeepLargestConnectedComponent(applied_labels=[1, 2], independent=False, connectivity=3)
    ref = np.asarray(monai(torch.from_numpy(lab[None].astype(np.int64))))[0].astype(np.uint8)
    np.testing.assert_array_equal(out, ref)
    assert out[12, 12, 12] == 2 and out[31, 31, 31] == 0 and out[31, 3, 31] == 0


def test_group_rejects_steps_that_add_voxels() -> None:
    with pytest.raises(ConfigError, match="add voxels"):
        apply_postprocessing(np.zeros((4, 4), np.uint8), (1, 1), {"1+2": [{"name": "fill_holes"}]})
    with pytest.raises(ConfigError, match="groups like"):
        apply_postprocessing(np.zeros((4, 4), np.uint8), (1, 1), {"1+1": [{"name": "keep_largest_component"}]})
