"""Predictor: same as MONAI's sliding window, world-consistent on reoriented inputs, clear input errors."""

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from medannot.data import Geometry, Image
from medannot.errors import InputError, ModelError
from medannot.inference import Predictor
from medannot.models import Bundle
from medannot.models.registry import create_network

PARAMS = {"channels": [4, 8], "strides": [2], "num_res_units": 1}


def _bundle(dims, preprocessing=(), patch=None, tta=False, labels=3, instances=None):
    torch.manual_seed(0)
    net = create_network("unet", dims, 1, labels, **PARAMS)
    spec = {
        "name": f"tiny{dims}d",
        "spatial_dims": dims,
        "network": {"name": "unet", "params": PARAMS},
        "labels": {str(i): {"name": f"l{i}"} for i in range(labels)},
        "preprocessing": list(preprocessing),
        "inference": {"patch_size": patch or [16] * dims, "overlap": 0.5, "tta_flips": tta},
        "instances": instances or {},
    }
    return Bundle.from_dict(spec, state_dict=net.state_dict())


def _ref_probs(bundle, array):
    net = bundle.build_network()
    with torch.inference_mode():
        logits = sliding_window_inference(torch.from_numpy(array[None]), [16] * bundle.spatial_dims, 1, net, overlap=0.5, mode="gaussian")
    return torch.softmax(logits, 1)[0].numpy()


def test_equals_monai_sliding_window():
    b = _bundle(2)
    arr = np.random.default_rng(0).normal(size=(1, 37, 50)).astype(np.float32)  # not a multiple of the patch
    pred = Predictor.from_bundle(b).predict(Image(arr, Geometry((0.5, 0.7))), keep_probabilities=True)
    ref = _ref_probs(b, arr)
    np.testing.assert_allclose(pred.probabilities.array, ref, atol=1e-6)
    assert pred.probabilities.array.dtype == np.float32
    np.testing.assert_array_equal(pred.labels.array[0], ref.argmax(0))
    assert pred.labels.array.dtype == np.uint8 and pred.labels.is_label
    assert set(pred.timings) >= {"preprocess", "network", "resample", "total"}


def test_input_smaller_than_patch():
    b = _bundle(2)
    arr = np.random.default_rng(1).normal(size=(1, 9, 11)).astype(np.float32)
    pred = Predictor.from_bundle(b).predict(Image(arr, Geometry((1.0, 1.0))), keep_probabilities=True)
    np.testing.assert_allclose(pred.probabilities.array, _ref_probs(b, arr), atol=1e-6)
    assert pred.labels.spatial_shape == (9, 11)


def test_flip_tta_is_mean_over_flips():
    b = _bundle(2, tta=True)
    arr = np.random.default_rng(2).normal(size=(1, 20, 24)).astype(np.float32)
    probs = Predictor.from_bundle(b).predict(Image(arr, Geometry((1.0, 1.0))), keep_probabilities=True).probabilities.array
    parts = [_ref_probs(b, arr)]
    for ax in (1, 2):
        parts.append(np.flip(_ref_probs(b, np.ascontiguousarray(np.flip(arr, ax))), ax))
    np.testing.assert_allclose(probs, np.mean(parts, axis=0), atol=1e-5)


def test_reoriented_input_gives_same_labels_in_world():
    b = _bundle(3, preprocessing=[{"name": "reorient", "params": {"axcodes": "RAS"}}])
    rng = np.random.default_rng(3)
    arr = rng.normal(size=(1, 18, 20, 12)).astype(np.float32)
    geo = Geometry(spacing=(1.0, 1.5, 2.0), origin=(-10.0, 5.0, 3.0))
    ras = Image(arr, geo)
    # Same voxels, stored as (k, i reversed, j): an LPS-like permuted/flipped grid with the affine adjusted.
    perm = np.ascontiguousarray(np.transpose(arr[:, ::-1, :, :], (0, 3, 1, 2)))
    aff = geo.affine
    new = np.eye(4)
    new[:3, 0] = aff[:3, 2]
    new[:3, 1] = -aff[:3, 0]
    new[:3, 2] = aff[:3, 1]
    new[:3, 3] = aff[:3, 3] + aff[:3, 0] * (arr.shape[1] - 1)
    other = Image(perm, Geometry.from_affine(new))
    # Sanity: the same world point has the same value in both.
    w = ras.geometry.index_to_world(np.array([3, 4, 5]))
    idx = np.rint(other.geometry.world_to_index(w)).astype(int)
    assert other.array[(0, *idx)] == ras.array[0, 3, 4, 5]
    p = Predictor.from_bundle(b)
    la = p.predict(ras).labels
    lb = p.predict(other).labels
    assert lb.same_grid(other)
    expected = np.transpose(la.array[:, ::-1, :, :], (0, 3, 1, 2))
    np.testing.assert_array_equal(lb.array, expected)


def test_resampled_working_grid_comes_back_on_input_grid():
    b = _bundle(2, preprocessing=[{"name": "resample_to_spacing", "params": {"spacing_mm": 2.0}}], labels=2)
    arr = np.zeros((1, 40, 44), np.float32)
    img = Image(arr, Geometry((1.0, 1.0), origin=(3.0, -2.0)))
    pred = Predictor.from_bundle(b).predict(img, keep_probabilities=True)
    assert pred.labels.same_grid(img)
    assert pred.probabilities.spatial_shape == (20, 22)


def test_input_errors():
    p = Predictor.from_bundle(_bundle(2))
    with pytest.raises(ModelError, match="2D but was given a 3D volume"):
        p.predict(Image.from_spatial(np.zeros((8, 8, 8), np.float32)))
    with pytest.raises(InputError, match="expects 1 channel"):
        p.predict(Image(np.zeros((3, 8, 8), np.float32), Geometry((1.0, 1.0))))
    with pytest.raises(InputError, match="label map"):
        p.predict(Image.from_spatial(np.zeros((8, 8), np.uint8), kind="label"))


def test_instances_from_bundle():
    b = _bundle(2, labels=2, instances={"1": 1})
    pred = Predictor.from_bundle(b).predict(Image.from_spatial(np.random.default_rng(4).normal(size=(24, 24)).astype(np.float32)))
    from scipy import ndimage as ndi

    ref, n = ndi.label(pred.labels.array[0] == 1)
    assert pred.instances[1].max() == n
    np.testing.assert_array_equal(pred.instances[1] > 0, ref > 0)
