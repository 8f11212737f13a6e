"""Spatial transforms: exact round trips for labels, world positions kept, peers nibabel and SimpleITK."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medannot.data import Geometry, Image, ImageKind
from medannot.errors import ConfigError, GeometryError
from medannot.transforms import build_transforms, list_transforms
from medannot.transforms.spatial import (
    crop_or_pad,
    crop_to_foreground,
    reorient,
    resample_to_grid,
    resample_to_spacing,
)


def _labels(image: Image) -> Image:
    arr = image.array[0]
    lab = np.digitize(arr, np.percentile(arr, [40, 70, 90])).astype(np.uint16)
    return Image(lab[None], image.geometry, ImageKind.LABEL)


def _rotated(image: Image, degrees: float) -> Image:
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    geom = Geometry(spacing=image.spacing, origin=image.geometry.origin, direction=rot)
    return Image(image.array, geom, image.kind)


def _to_sitk(image: Image) -> sitk.Image:
    # sitk index (i, j, k) must be our array index (i, j, k): give it the transposed array.
    out = sitk.GetImageFromArray(np.ascontiguousarray(image.array[0].transpose(2, 1, 0)))
    out.SetSpacing(image.spacing)
    out.SetOrigin(image.geometry.origin)
    out.SetDirection(np.asarray(image.geometry.direction).ravel().tolist())
    return out


def _sitk_resample(image: Image, target: Image, interp: int) -> np.ndarray:
    ref = sitk.Image([int(s) for s in target.spatial_shape], sitk.sitkFloat32)
    ref.SetSpacing(target.spacing)
    ref.SetOrigin(target.geometry.origin)
    ref.SetDirection(np.asarray(target.geometry.direction).ravel().tolist())
    out = sitk.Resample(_to_sitk(image), ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def test_reorient_matches_nibabel_closest_canonical(mni_slab: Image) -> None:
    nii = nib.Nifti1Image(mni_slab.array[0], mni_slab.affine)
    odd = nii.as_reoriented(np.array([[2, -1], [0, 1], [1, -1]]))  # an L?-like, permuted orientation
    assert nib.aff2axcodes(odd.affine) != ("R", "A", "S")
    ours = reorient(Image(np.asarray(odd.dataobj)[None], Geometry.from_affine(odd.affine)), "RAS")
    canon = nib.as_closest_canonical(odd)
    np.testing.assert_array_equal(ours.array[0], np.asarray(canon.dataobj))
    np.testing.assert_allclose(ours.affine, canon.affine, atol=1e-9)
    assert ours.geometry.axcodes() == ("R", "A", "S")


def test_reorient_keeps_world_positions(mni_slab: Image) -> None:
    out = reorient(mni_slab, "PIL")
    assert out.geometry.axcodes() == ("P", "I", "L")
    src_idx = np.array([5, 7, 11])
    world = mni_slab.geometry.index_to_world(src_idx)
    new_idx = np.rint(out.geometry.world_to_index(world)).astype(int)
    assert out.array[(0, *new_idx)] == mni_slab.array[(0, *src_idx)]


def test_reorient_then_resample_back_is_identity_for_labels(mni_slab: Image) -> None:
    lab = _labels(mni_slab)
    for codes in ("LPS", "PIL", "SRA"):
        moved = reorient(lab, codes)
        back = resample_to_grid(moved, lab.geometry, lab.spatial_shape)
        assert back.array.dtype == np.uint16
        np.testing.assert_array_equal(back.array, lab.array)


def test_reorient_2d_and_bad_codes() -> None:
    img = Image.from_spatial(np.arange(12, dtype=np.float32).reshape(3, 4))
    out = reorient(img, "LP")
    np.testing.assert_array_equal(out.array[0], img.array[0][::-1, ::-1])
    with pytest.raises(ConfigError, match="axcodes"):
        reorient(img, "RAS")
    with pytest.raises(ConfigError, match="axcodes"):
        reorient(Image.from_spatial(np.zeros((2, 2, 2))), "RRS")


def test_resample_to_2mm_and_back_keeps_world_positions(mni_slab: Image) -> None:
    # a bright blob: its centre of mass in world mm must not move
    arr = np.zeros(mni_slab.spatial_shape, np.float32)
    arr[20:27, 30:35, 8:13] = 100.0
    img = Image(arr[None], mni_slab.geometry)

    def com_world(im: Image) -> np.ndarray:
        idx = np.argwhere(im.array[0] > 0)
        w = im.array[0][im.array[0] > 0]
        return im.geometry.index_to_world((idx * w[:, None]).sum(0) / w.sum())

    down = resample_to_spacing(img, 2.0)
    assert down.spacing == (2.0, 2.0, 2.0) and down.array.dtype == np.float32
    assert down.spatial_shape == (32, 36, 12)
    np.testing.assert_allclose(com_world(down), com_world(img), atol=0.25)
    back = resample_to_grid(down, img.geometry, img.spatial_shape)
    assert back.spatial_shape == img.spatial_shape
    np.testing.assert_allclose(com_world(back), com_world(img), atol=0.25)
    # grid relation: new voxel i sits where old voxel 2i sat
    np.testing.assert_allclose(down.geometry.index_to_world([3, 4, 5]), img.geometry.index_to_world([6, 8, 10]))


def test_resample_to_spacing_matches_simpleitk_linear(mni_slab: Image) -> None:
    img = _rotated(mni_slab, 20.0)
    ours = resample_to_spacing(img, [1.7, 2.3, 1.5])
    ref = _sitk_resample(img, ours, sitk.sitkLinear)
    assert ours.array.dtype == np.float32
    scale = float(np.abs(img.array).max())
    np.testing.assert_allclose(ours.array[0], ref, atol=1e-4 * scale)


def test_resample_to_spacing_matches_simpleitk_nearest_for_labels(mni_slab: Image) -> None:
    lab = _labels(_rotated(mni_slab, -15.0))
    ours = resample_to_spacing(lab, [2.0, 3.0, 4.0])
    assert ours.is_label and ours.array.dtype == np.uint16
    ref = _sitk_resample(lab, ours, sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(ours.array[0], ref.astype(np.uint16))


def test_resample_to_grid_out_of_field_gets_cval_and_2d_multichannel() -> None:
    arr = np.stack([np.ones((10, 12)), 2 * np.ones((10, 12))]).astype(np.int16)
    img = Image(arr, Geometry(spacing=(1.0, 1.0)))
    target = Geometry(spacing=(1.0, 1.0), origin=(5.0, -3.0))
    out = resample_to_grid(img, target, (10, 12), cval=-1)
    assert out.array.shape == (2, 10, 12) and out.array.dtype == np.float32
    np.testing.assert_array_equal(out.array[:, :5, 3:], np.stack([np.ones((5, 9)), 2 * np.ones((5, 9))]))
    assert np.all(out.array[:, 5:, :] == -1) and np.all(out.array[:, :, :3] == -1)
    with pytest.raises(GeometryError):
        resample_to_grid(img, Geometry(spacing=(1.0, 1.0, 1.0)), (2, 2, 2))


def test_resample_cubic_order_close_to_linear(mni_slab: Image) -> None:
    lin = resample_to_spacing(mni_slab, 1.5, order=1)
    cub = resample_to_spacing(mni_slab, 1.5, order=3)
    assert cub.array.dtype == np.float32
    assert np.corrcoef(lin.array.ravel(), cub.array.ravel())[0, 1] > 0.99


def test_crop_or_pad_keeps_world_positions(mni_slab: Image) -> None:
    out = crop_or_pad(mni_slab, [50, 80, None])
    assert out.spatial_shape == (50, 80, 24)
    # voxel at source index (7+ 10, 0, 3) -> cropped 7 on axis 0 (64-50)//2, padded 4 on axis 1
    np.testing.assert_allclose(out.geometry.index_to_world([0, 4, 3]), mni_slab.geometry.index_to_world([7, 0, 3]))
    assert out.array[0, 0, 4, 3] == mni_slab.array[0, 7, 0, 3]
    assert np.all(out.array[0, :, :4] == 0)
    back = crop_or_pad(out, list(mni_slab.spatial_shape))
    inner = back.array[0, 7:57]
    np.testing.assert_array_equal(inner, mni_slab.array[0, 7:57])
    assert back.geometry.isclose(mni_slab.geometry)


def test_crop_to_foreground_and_empty() -> None:
    arr = np.zeros((20, 30), np.float32)
    arr[5:8, 10:20] = 1
    img = Image.from_spatial(arr, spacing=(0.5, 2.0))
    out = crop_to_foreground(img, margin=1)
    assert out.spatial_shape == (5, 12)
    np.testing.assert_allclose(out.geometry.origin, (2.0, 18.0))
    empty = Image.from_spatial(np.zeros((4, 4), np.float32))
    assert crop_to_foreground(empty) is empty


def test_compose_specs_roundtrip_and_pair(mni_slab: Image) -> None:
    specs = [
        {"name": "reorient", "params": {"axcodes": "LPS"}},
        {"name": "resample_to_spacing", "params": {"spacing_mm": [2.0, 2.0, None]}},
        {"name": "crop_or_pad", "params": {"shape": [30, 30, 30]}},
        {"name": "percentile_normalise", "params": {"lower": 1, "upper": 99}},
    ]
    comp = build_transforms(specs)
    again = build_transforms(json.loads(json.dumps(comp.specs)))
    out = comp(mni_slab)
    np.testing.assert_array_equal(out.array, again(mni_slab).array)
    assert out.spatial_shape == (30, 30, 30) and 0.0 <= out.array.min() and out.array.max() <= 1.0
    lab = _labels(mni_slab)
    img2, lab2 = comp.apply_pair(mni_slab, lab)
    assert lab2 is not None and lab2.same_grid(img2) and lab2.array.dtype == np.uint16
    assert set(np.unique(lab2.array)) <= {0, 1, 2, 3}


def test_build_transforms_errors() -> None:
    assert {"reorient", "resample_to_spacing", "ct_window", "percentile_normalise"} <= set(list_transforms())
    with pytest.raises(ConfigError, match="expected one of: .*reorient"):
        build_transforms([{"name": "reorientate"}])
    with pytest.raises(ConfigError, match="'ct_window'"):
        build_transforms([{"name": "ct_window", "params": {"level": 40}}])
    with pytest.raises(ConfigError, match="'crop_or_pad'.*shape"):
        build_transforms([{"name": "crop_or_pad", "params": {"shape": "big"}}])
    with pytest.raises(ConfigError, match="unknown keys"):
        build_transforms([{"name": "reorient", "parms": {}}])
