"""Connected components vs scipy / scikit-image, physical sizes with anisotropic spacing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import morphology

from medannot.errors import ConfigError, InputError
from medannot.postprocess import component_stats, instances, keep_largest_component, remove_small_objects


def test_instances_count_matches_scipy(nuclei_mask: np.ndarray, wm_slab: np.ndarray) -> None:
    fg = nuclei_mask > 0
    inst, n = instances(fg, connectivity=4)
    _, n_ref = ndi.label(fg)
    assert n == n_ref and inst.max() == n
    inst8, n8 = instances(fg)
    assert n8 == ndi.label(fg, structure=np.ones((3, 3)))[1]
    _, n3 = instances(wm_slab, connectivity=6)
    assert n3 == ndi.label(wm_slab)[1]
    _, n26 = instances(wm_slab)
    assert n26 == ndi.label(wm_slab, structure=np.ones((3, 3, 3)))[1]
    # same partition as scipy (ids may differ): a one-to-one mapping between ids
    ref, _ = ndi.label(fg)
    pairs = np.unique(np.stack([inst[fg], ref[fg]]), axis=1)
    assert pairs.shape[1] == n


def test_instances_empty_and_errors() -> None:
    inst, n = instances(np.zeros((5, 5), bool))
    assert n == 0 and not inst.any()
    with pytest.raises(ConfigError, match="connectivity"):
        instances(np.zeros((5, 5), bool), connectivity=6)
    with pytest.raises(InputError, match="2D or 3D"):
        instances(np.zeros(5, bool))


def test_remove_small_objects_matches_skimage_with_spacing(nuclei_mask: np.ndarray) -> None:
    fg = nuclei_mask > 0
    sizes = np.bincount(ndi.label(fg)[0].ravel())[1:]
    limit = int(np.median(sizes))
    spacing = (0.5, 0.25)  # 0.125 mm^2 per pixel
    ours = remove_small_objects(fg.astype(np.uint8), min_size_mm=limit * 0.125, spacing=spacing, connectivity=4)
    # skimage removes objects of <= max_size pixels; ours removes < min_size: same at max_size = limit - 1
    ref = morphology.remove_small_objects(fg, max_size=limit - 1, connectivity=1)
    np.testing.assert_array_equal(ours.astype(bool), ref)
    assert 0 < ndi.label(ours)[1] < ndi.label(fg)[1]


def test_remove_small_objects_per_label_and_anisotropic_3d() -> None:
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[1:3, 1:3, 1:3] = 1  # 8 voxels -> 8 * 0.5*1*2 = 8 mm^3
    lab[5:9, 5:9, 5:9] = 1  # 64 voxels = 64 mm^3
    lab[0, 9, 9] = 2  # 1 voxel = 1 mm^3
    out = remove_small_objects(lab, 10.0, (0.5, 1.0, 2.0))
    assert out[1, 1, 1] == 0 and out[6, 6, 6] == 1 and out[0, 9, 9] == 0
    only2 = remove_small_objects(lab, 10.0, (0.5, 1.0, 2.0), label=2)
    assert only2[1, 1, 1] == 1 and only2[0, 9, 9] == 0
    assert lab[1, 1, 1] == 1  # input untouched
    empty = np.zeros((4, 4, 4), np.uint16)
    assert not remove_small_objects(empty, 5.0, (1, 1, 1)).any()


def test_keep_largest_component(nuclei_mask: np.ndarray) -> None:
    lab = (nuclei_mask > 0).astype(np.uint8)
    lab[:5, :5] = 2
    out = keep_largest_component(lab, 1)
    sizes = np.bincount(ndi.label(lab == 1, structure=np.ones((3, 3)))[0].ravel())[1:]
    assert (out == 1).sum() == sizes.max() and ndi.label(out == 1)[1] == 1
    assert np.all(out[:5, :5] == 2)
    np.testing.assert_array_equal(keep_largest_component(lab, 7), lab)


def test_component_stats(nuclei_mask: np.ndarray) -> None:
    stats = component_stats(nuclei_mask, (0.5, 2.0))
    ids = np.unique(nuclei_mask)[1:]
    assert [s["id"] for s in stats] == ids.tolist()
    objs = ndi.find_objects(nuclei_mask)
    for s in stats[:20]:
        sl = objs[s["id"] - 1]
        assert s["bbox_start"] == [sl[0].start, sl[1].start] and s["bbox_stop"] == [sl[0].stop, sl[1].stop]
        assert s["voxels"] == int((nuclei_mask == s["id"]).sum())
        assert s["size_mm"] == pytest.approx(s["voxels"] * 1.0)
    assert component_stats(np.zeros((3, 3, 3), np.uint8), (1, 1, 1)) == []
