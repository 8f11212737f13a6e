"""The fast post-processing gives the voxels of the slow one, on real masks.

- opening / closing by distance transforms (``edt``) against scipy's binary erosion / dilation with the
  ball element (the implementation they replaced), isotropic and anisotropic, exact and inexact spacings;
- the pipeline on the bounding box of the labels against the pipeline on the whole image;
- the one-pass arg-max on the input grid against resampling each channel (the replaced path).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy import ndimage as ndi

from medannot.data import Geometry, Image, ImageKind
from medannot.postprocess import apply_postprocessing, binary_close, binary_open, structuring_element
from medannot.postprocess.morphology import _box
from medannot.postprocess.pipeline import _apply_parsed, validate_postprocessing
from medannot.samples import mni152_path, mni152_tissue_labels, reacquire
from medannot.transforms.spatial import _argmax_by_channel, resample_to_spacing, resampled_argmax

BRAIN_SPEC = {"1+2": [{"name": "open", "params": {"radius_mm": 8}}, {"name": "keep_largest_component", "params": {}}],
              "1": [{"name": "keep_largest_component", "params": {}}], "2": [{"name": "keep_largest_component", "params": {}}]}


def scipy_morph(mask: np.ndarray, radius_mm: float, spacing: Sequence[float], closing: bool) -> np.ndarray:
    """The replaced implementation: scipy binary erosion / dilation with the ball element on the mask's box."""
    arr = mask.astype(bool)
    elem = structuring_element(radius_mm, spacing)
    out = arr.copy()
    half = [s // 2 for s in elem.shape]
    box = _box(arr, [2 * h for h in half])
    if box is None or elem.size == 1:
        return out
    sub = arr[box]
    if closing:
        out[box] = ndi.binary_erosion(ndi.binary_dilation(sub, elem), elem, border_value=1)
    else:
        out[box] = ndi.binary_dilation(ndi.binary_erosion(sub, elem, border_value=1), elem)
    return out


@pytest.fixture(scope="module")
def tissue() -> Image:
    """MNI152 grey (1) and white (2) matter, 1 mm, 197x233x189 (the template's own maps, real)."""
    return mni152_tissue_labels()


@pytest.mark.parametrize("closing", [False, True], ids=["open", "close"])
@pytest.mark.parametrize("spacing, radius", [((1.0, 1.0, 1.0), 8.0), ((1.0, 1.0, 1.0), 2.5), ((1.5, 1.5, 1.5), 8.0),
                                             ((0.9, 0.9, 3.0), 8.0), ((0.7, 1.1, 2.3), 3.3)])
def test_morphology_equals_scipy_on_the_brain(tissue: Image, spacing: tuple[float, ...], radius: float, closing: bool) -> None:
    # The same voxels read as if they had another spacing: exact (dyadic) and inexact (0.9, 0.7, 1.1, 2.3 mm) radii.
    labels = tissue.array[0]
    mask = (labels > 0) if radius > 4 else (labels == 2)
    fast = binary_close(mask, radius, spacing) if closing else binary_open(mask, radius, spacing)
    slow = scipy_morph(mask, radius, spacing, closing)
    assert fast.dtype == bool and fast.shape == mask.shape
    np.testing.assert_array_equal(fast, slow)
    assert fast.sum() != mask.sum()  # the operation did something


@pytest.mark.parametrize("radius", [1.0, 3.0, 6.5])
def test_morphology_equals_scipy_on_nuclei(nuclei_mask: np.ndarray, radius: float) -> None:
    fg = nuclei_mask > 0
    for spacing in [(1.0, 1.0), (0.65, 0.65), (1.0, 0.5)]:
        np.testing.assert_array_equal(binary_open(fg, radius, spacing), scipy_morph(fg, radius, spacing, False))
        np.testing.assert_array_equal(binary_close(fg, radius, spacing), scipy_morph(fg, radius, spacing, True))


def test_morphology_at_the_image_border() -> None:
    # Erosion treats the outside as foreground, dilation does not reach past the border.
    m = np.zeros((30, 30, 30), bool)
    m[:12, 5:25, 5:25] = True
    m[20:, 0:3, :] = True
    for closing in (False, True):
        got = binary_close(m, 4.0, (1.0, 1.0, 1.0)) if closing else binary_open(m, 4.0, (1.0, 1.0, 1.0))
        np.testing.assert_array_equal(got, scipy_morph(m, 4.0, (1.0, 1.0, 1.0), closing))
    assert not binary_open(np.zeros((5, 5, 5), bool), 3.0, (1, 1, 1)).any()


def test_pipeline_on_the_box_equals_the_whole_image(tissue: Image) -> None:
    labels = tissue.array[0].copy()
    labels[:20] = 0  # a box that does not reach every border
    labels[5:8, 100:110, 90:100] = 2  # a small stray blob for keep_largest to remove
    specs = [BRAIN_SPEC,
             {"*": [{"name": "remove_small_objects", "params": {"min_size_mm": 500}}, {"name": "fill_holes"}],
              "1": [{"name": "close", "params": {"radius_mm": 3}}]}]
    for spec in specs:
        fast = apply_postprocessing(labels, (1.0, 1.0, 1.0), spec)
        whole = _apply_parsed(labels, (1.0, 1.0, 1.0), validate_postprocessing(spec))
        np.testing.assert_array_equal(fast, whole)
        assert fast.dtype == labels.dtype and not np.array_equal(fast, labels)


def _tissue_probabilities() -> Image:
    """Background / grey / white probabilities of the MNI152 template at 2 mm (the model's working grid)."""
    from medannot.io import read_image

    gm = read_image(mni152_path("gm"))
    wm = read_image(mni152_path("wm"))
    p = np.concatenate([gm.array, wm.array]).astype(np.float32) / 255.0
    p = np.concatenate([np.clip(1.0 - p.sum(axis=0, keepdims=True), 0, 1), p])
    return resample_to_spacing(Image(p, gm.geometry, ImageKind.INTENSITY), 2.0)


@pytest.mark.parametrize("spacing, axcodes", [((1.0, 1.0, 1.0), "RAS"), ((1.0, 1.0, 3.0), "LPS"), ((1.2, 1.2, 1.2), "ASL"),
                                              ((0.9, 0.9, 3.0), "LIP"), ((2.5, 2.5, 2.5), "PIR")])
def test_resampled_argmax_equals_resampling_each_channel(spacing: tuple[float, float, float], axcodes: str) -> None:
    probs = _tissue_probabilities()
    target = reacquire(mni152_tissue_labels(), spacing, axcodes)
    fast = resampled_argmax(probs.array, probs.geometry, target.geometry, target.spatial_shape)
    slow = _argmax_by_channel(probs.array, probs.geometry, target.geometry, target.spatial_shape)
    assert fast.dtype == np.uint8 and fast.shape == target.spatial_shape
    np.testing.assert_array_equal(fast, slow)
    assert set(np.unique(fast)) == {0, 1, 2}


def test_resampled_argmax_ties_outside_and_oblique() -> None:
    # Exact ties go to the first channel, as in the per-channel loop; outside the source: 0; oblique grids too.
    rng = np.random.default_rng(0)
    p = np.zeros((3, 12, 12, 12), np.float32)
    p[1, :6] = 0.5
    p[2, :6] = 0.5  # tie between 1 and 2: 1 wins
    p[2, 6:] = rng.random((6, 12, 12), dtype=np.float32)
    p[0, 6:] = rng.random((6, 12, 12), dtype=np.float32)
    src = Geometry(spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), direction=np.eye(3))
    for tgt, shape in [(Geometry(spacing=(1.0, 1.0, 1.0), origin=(-3.0, 0.0, 0.0), direction=np.eye(3)), (30, 24, 24)),
                       (Geometry(spacing=(1.3, 0.7, 1.0), origin=(1.0, 2.0, 3.0),
                                 direction=np.array([[0.96, -0.28, 0], [0.28, 0.96, 0], [0, 0, 1.0]])), (20, 20, 20))]:
        fast = resampled_argmax(p, src, tgt, shape)
        np.testing.assert_array_equal(fast, _argmax_by_channel(p, src, tgt, shape))
    assert fast.any()
    first = resampled_argmax(p, src, Geometry(spacing=(1.0, 1.0, 1.0), origin=(-3.0, 0.0, 0.0), direction=np.eye(3)), (30, 24, 24))
    assert first[:2].max() == 0 and first[4, 5, 5] == 1  # outside the field of view (x < -1 mm) and the tie
