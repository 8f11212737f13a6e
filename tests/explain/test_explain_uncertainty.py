"""Segmentation uncertainty: entropy limits, Monte-Carlo dropout, the per-case summary, files on the input grid."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medannot.errors import ModelError
from medannot.explain.uncertainty import mc_dropout_probabilities, softmax_entropy, uncertainty_summary
from medannot.inference import Predictor
from medannot.models import Bundle
from medannot.models.registry import create_network


def test_entropy_is_zero_for_one_hot_and_maximal_at_uniform():
    k = 4
    p = np.zeros((k, 3, 5), np.float32)
    p[0, 0] = 1.0  # row 0: one-hot
    p[:, 1] = 1.0 / k  # row 1: uniform
    p[:2, 2] = 0.5  # row 2: two classes tied
    h = softmax_entropy(p)
    np.testing.assert_allclose(h[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(h[1], np.log(k), rtol=1e-6)
    np.testing.assert_allclose(h[2], np.log(2), rtol=1e-6)
    hn = softmax_entropy(p, normalised=True)
    np.testing.assert_allclose(hn[1], 1.0, rtol=1e-6)
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(k), size=200).T.astype(np.float32)
    assert softmax_entropy(q, normalised=True).max() <= 1.0 + 1e-6 and softmax_entropy(q).min() >= 0.0


def test_entropy_needs_two_classes():
    with pytest.raises(ModelError, match="at least 2"):
        softmax_entropy(np.ones((1, 4, 4), np.float32))


def test_summary_inside_the_mask_and_empty_mask_rule():
    e = np.array([[0.9, 0.1], [0.2, 0.6]])
    labels = np.array([[1, 0], [0, 2]])
    s = uncertainty_summary(e, labels, {0: "bg", 1: "a", 2: "b"}, threshold=0.5)
    assert s["mean_entropy"] == pytest.approx(0.45)
    assert s["mean_entropy_in_mask"] == pytest.approx(0.75)
    assert s["uncertain_fraction_in_mask"] == pytest.approx(1.0) and s["uncertain_voxels"] == 2
    assert s["per_label"]["a"]["mean_entropy"] == pytest.approx(0.9) and s["per_label"]["b"]["mean_entropy"] == pytest.approx(0.6)
    empty = uncertainty_summary(e, np.zeros_like(labels), {0: "bg", 1: "a"})
    assert empty["mean_entropy_in_mask"] is None and empty["per_label"]["a"]["mean_entropy"] is None


def _tiny_bundle(dropout: float) -> Bundle:
    torch.manual_seed(0)
    params = {"channels": [4, 8], "strides": [2], "num_res_units": 1, "dropout": dropout}
    net = create_network("unet", 2, 1, 2, **params)
    spec = {"name": "tiny-dropout", "spatial_dims": 2, "network": {"name": "unet", "params": params},
            "labels": {"0": {"name": "background"}, "1": {"name": "thing"}}, "inference": {"patch_size": [16, 16]}}
    return Bundle.from_dict(spec, state_dict=net.state_dict())


def test_mc_dropout_varies_with_dropout_and_is_reproducible():
    arr = np.random.default_rng(1).normal(size=(1, 24, 24)).astype(np.float32)
    pred = Predictor(_tiny_bundle(0.5), tta=False)
    mean, var = mc_dropout_probabilities(pred, arr, n=6, seed=3)
    assert mean.shape == var.shape == (2, 24, 24)
    np.testing.assert_allclose(mean.sum(0), 1.0, rtol=1e-5)
    assert var.max() > 1e-6
    mean2, var2 = mc_dropout_probabilities(pred, arr, n=6, seed=3)
    np.testing.assert_array_equal(var, var2)
    # the predictor's own network is unchanged: plain inference stays deterministic
    np.testing.assert_array_equal(pred.network_probabilities(arr), pred.network_probabilities(arr))


def test_mc_dropout_is_refused_without_dropout():
    with pytest.raises(ModelError, match="needs a network with dropout") as err:
        mc_dropout_probabilities(Predictor(_tiny_bundle(0.0), tta=False), np.zeros((1, 16, 16), np.float32), n=4)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="at least 2 passes"):
        mc_dropout_probabilities(Predictor(_tiny_bundle(0.5), tta=False), np.zeros((1, 16, 16), np.float32), n=1)


def test_annotator_writes_entropy_and_mc_maps_on_the_input_grid(tmp_path):
    from medannot.tasks import PredictOptions, load_predictor
    from medannot.workflows.annotate import annotate_inputs

    bundle = _tiny_bundle(0.3)
    bundle.save(tmp_path / "tiny", card="# tiny\n\nUntrained; tests only.\n")
    from PIL import Image as PILImage

    PILImage.fromarray(np.random.default_rng(2).integers(0, 255, (20, 30)).astype(np.uint8)).save(tmp_path / "case.png")
    annotator = load_predictor(tmp_path / "tiny", PredictOptions(uncertainty=True, mc_dropout=4))
    results = annotate_inputs(tmp_path / "case.png", annotator, tmp_path / "out")
    assert results[0].ok, results[0].reason
    folder = tmp_path / "out" / "case"
    ann = json.loads((folder / "annotation.json").read_text())
    s = ann["explanations"]["uncertainty"]
    assert s["mc_dropout_passes"] == 4 and s["mc_dropout_mean_variance"] > 0
    ent = np.asarray(nib.load(folder / ann["files"]["uncertainty"]).dataobj)
    assert ent.shape[:2] == (20, 30) and 0 <= ent.min() and ent.max() <= 1 + 1e-6
    assert s["mean_entropy"] == pytest.approx(float(ent.mean()), rel=1e-4)
    assert (folder / ann["files"]["mc_variance"]).is_file()
